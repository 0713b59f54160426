"""Where users' template bodies render: jinja2's immutable sandbox, with limits, in a child process.

jinja2's sandbox stops code execution, not exhaustion: `{{ 9 ** 10000000 }}` is a minute of CPU
(folded at compile time, even), `{{ 10 ** 5000 }}` an integer Python will not print, nested loops
can run for hours, and `{{ range }}` prints a memory address. So here:

- `**`, `*`, `+`, `%` and `//` are intercepted (which also stops compile-time folding): results
  over 256 bits or strings/lists over the output limit are refused;
- `range` stops at 10,000 items; printing a function, class or module is refused, as are `format`
  and `%` with anything but text and numbers;
- rendering runs in one long-lived child process (spawned, jinja2 and yaml only) and is given
  2 seconds; a render that takes longer is killed with its process, which is started again.

Everything refused is a `TemplateLimitError` (a ValueError) with a one-line reason.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import operator
import threading
from multiprocessing import get_context
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_INT_BITS = 256
MAX_OUTPUT_CHARS = 60_000
MAX_RANGE = 10_000
RENDER_SECONDS = 2.0

_PRIMITIVE = (str, int, float, bool, type(None))
_OPS = {"**": operator.pow, "*": operator.mul, "+": operator.add, "%": operator.mod, "//": operator.floordiv}


class TemplateLimitError(ValueError):
    """A template that is not allowed or too expensive to render."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _check_printable(value: Any, depth: int = 0) -> None:
    if isinstance(value, _PRIMITIVE) or isinstance(value, jinja2.Undefined):
        return
    if isinstance(value, list | tuple | dict) and depth < 4:
        for item in value.values() if isinstance(value, dict) else value:
            _check_printable(item, depth + 1)
        return
    raise SecurityError(f"a {type(value).__name__} cannot be printed in a template")


def _safe_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    return r


def _safe_format(value: Any, *args: Any, **kwargs: Any) -> str:
    for arg in (value, *args, *kwargs.values()):
        if not isinstance(arg, _PRIMITIVE):
            raise SecurityError("format() takes text and numbers only")
    return str(value) % (kwargs or args)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(_OPS)

    def __init__(self, **options: Any):
        super().__init__(finalize=self._finalize, **options)
        self.globals["range"] = _safe_range
        self.filters["format"] = _safe_format

    @staticmethod
    def _finalize(value: Any) -> Any:
        _check_printable(value)
        return value

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right < 0 or right * max(abs(left).bit_length(), 1) > MAX_INT_BITS:
                raise SecurityError(f"{left} ** {right} is too large for a template")
        if op == "*":
            n = right if isinstance(right, int) else left if isinstance(left, int) else None
            seq = left if isinstance(right, int) else right
            if isinstance(n, int) and _size(seq) * max(n, 0) > MAX_OUTPUT_CHARS:
                raise SecurityError("a repeated text or list would be longer than the output limit")
        if op == "%" and isinstance(left, str):
            for arg in right if isinstance(right, tuple) else (right,):
                if not isinstance(arg, _PRIMITIVE):
                    raise SecurityError("'%' formatting takes text and numbers only")
        result = _OPS[op](left, right)
        if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
            raise SecurityError("a number in a template may have at most 256 bits")
        if _size(result) > MAX_OUTPUT_CHARS:
            raise SecurityError("a text or list in a template would be longer than the output limit")
        return result


ENV = LimitedSandbox(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)


def render_here(body: str, values: dict[str, Any]) -> str:
    """Render in this process (the child's work; also what tests of the limits call)."""
    try:
        out: list[str] = []
        size = 0
        for piece in ENV.from_string(body).generate(**values):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimitError(f"the rendered prompt is longer than {MAX_OUTPUT_CHARS} characters")
            out.append(piece)
        return "".join(out)
    except SecurityError as e:
        raise TemplateLimitError(f"body: not allowed in a template: {e}") from None
    except jinja2.TemplateError as e:
        raise TemplateLimitError(f"body: {e}") from None
    except (OverflowError, ValueError, MemoryError, RecursionError, TypeError, ZeroDivisionError, KeyError,
            IndexError, AttributeError) as e:
        if isinstance(e, TemplateLimitError):
            raise
        raise TemplateLimitError(f"body: {type(e).__name__}: {e}") from None


class _Renderer:
    """One child process for renders; replaced when a render overruns its time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
            return self._pool

    def _reset(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()  # a render stuck in a loop: the only way to stop it
        pool.shutdown(wait=True, cancel_futures=True)  # quick: its process is gone

    def render(self, body: str, values: dict[str, Any], timeout: float = RENDER_SECONDS) -> str:
        pool = self._executor()
        future = pool.submit(render_here, body, values)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self._reset(pool)
            raise TemplateLimitError(f"the template took longer than {timeout:g} s to render") from None
        except concurrent.futures.process.BrokenProcessPool:
            self._reset(pool)
            raise TemplateLimitError("the template could not be rendered (its process stopped)") from None


    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


RENDERER = _Renderer()
atexit.register(RENDERER.close)  # before the interpreter tears its modules down


def render(body: str, values: dict[str, Any]) -> str:
    """Render a user's template body with the limits above (blocking: call it off the event loop)."""
    return RENDERER.render(body, values)
