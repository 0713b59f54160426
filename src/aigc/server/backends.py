"""Model name -> what answers for it: a local engine (local_backend.py), a remote OpenAI-compatible
server (remote.py) -- both generative backends (generation.py) -- or a classifier.

`ModelBackends` is the server's registry. Local models load in a background thread (seconds to
minutes), so the server answers at once: `/health` says 503 and requests for a loading model get a
503 until it is ready; a name the server never heard of is a 404.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aigc.engine.protocol import EngineRequest, EngineStats, RequestStream
from aigc.server.errors import APIError, model_not_found
from aigc.server.schemas import ModelCard

if TYPE_CHECKING:
    from aigc.server.generation import GenerativeBackend

log = logging.getLogger("aigc.server")


class EngineLike(Protocol):
    def submit(self, request: EngineRequest) -> RequestStream: ...

    def stats(self) -> EngineStats: ...

    def stop(self) -> None: ...

    def embed(self, inputs: list[list[int]], dimensions: int | None = None) -> list: ...

    @property
    def embedding_size(self) -> int: ...


@dataclass
class ClassifierBackend:
    """A fine-tuned classifier (`aigc train classify` output), answered by POST /v1/classify."""

    name: str
    classifier: Any  # aigc.apps.classify.Classifier: classify(texts) -> [{label, probabilities}]
    created: int = field(default_factory=lambda: int(time.time()))

    purpose = "classification"

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.labels)

    def card(self) -> ModelCard:
        return ModelCard(id=self.name, created=self.created, owned_by="aigc-classifier")

    def close(self) -> None:
        pass


Loader = Callable[[], Any]


class ModelBackends:
    def __init__(self, backends: Iterable[Any] = ()):
        self._lock = threading.Lock()
        self._backends: dict[str, Any] = {}
        self._pending: dict[str, Loader] = {}
        self.failed: dict[str, str] = {}  # name -> why it did not load
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._loaded = threading.Event()  # the loader thread went through its list
        # Wraps every generative backend handed out (server/moderation_guard.py), when moderation is on.
        self.guard: Any = None
        for b in backends:
            self.add(b)

    # ---- registration -------------------------------------------------------------------------

    def add(self, backend: Any) -> None:
        with self._lock:
            if backend.name in self._backends:
                raise ValueError(f"model name {backend.name!r} is registered twice")
            self._backends[backend.name] = backend
            self._pending.pop(backend.name, None)

    def add_loader(self, name: str, loader: Loader) -> None:
        """Register a model that `start_loading` will build (in the background)."""
        with self._lock:
            if name in self._backends or name in self._pending:
                raise ValueError(f"model name {name!r} is registered twice")
            self._pending[name] = loader

    def start_loading(self) -> threading.Thread | None:
        """Build every pending model, one after the other, in a daemon thread.

        The thread then stays parked until `close()`. Measured with torch's OpenMP (libgomp) on
        CPU: once a thread that ran torch work exits, the engine's batched decode steps cost 3-4x
        more CPU time; while it lives, decoding is as fast as with a model loaded in the main thread.
        """
        with self._lock:
            todo = list(self._pending.items())
        if not todo or self._thread is not None:
            return self._thread

        def run() -> None:
            for name, loader in todo:
                started = time.perf_counter()
                try:
                    backend = loader()
                except Exception as e:  # a model that fails to load is reported, not fatal to others
                    log.error("model %s failed to load: %s: %s", name, type(e).__name__, e)
                    with self._lock:
                        self._pending.pop(name, None)
                        self.failed[name] = f"{type(e).__name__}: {e}"
                    continue
                for b in backend if isinstance(backend, list) else [backend]:  # a remote may serve several
                    self.add(b)
                log.info("model %s ready in %.1fs", name, time.perf_counter() - started)
            self._loaded.set()
            self._closed.wait()

        self._thread = threading.Thread(target=run, name="aigc-model-loader", daemon=True)
        self._thread.start()
        return self._thread

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait until every model is loaded or failed; True if none is still loading."""
        if self._thread is not None:
            self._loaded.wait(timeout)
        return self.ready

    # ---- lookup -------------------------------------------------------------------------------

    @property
    def loading(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    @property
    def ready(self) -> bool:
        """Every model loaded (or failed: `failed` says which; /health reports them)."""
        with self._lock:
            return not self._pending

    def names(self) -> list[str]:
        with self._lock:
            return list(self._backends)

    def all(self) -> list[Any]:
        with self._lock:
            return list(self._backends.values())

    def get(self, name: str) -> Any:
        """The backend for a model name, or the API error a client should see."""
        with self._lock:
            backend = self._backends.get(name)
            pending = name in self._pending
            failed = self.failed.get(name)
        if backend is not None:
            return backend
        if pending:
            raise APIError(503, f"The model `{name}` is still loading; retry shortly.", code="model_loading",
                           headers={"Retry-After": "5"})
        if failed is not None:
            raise APIError(503, f"The model `{name}` failed to load: {failed}", code="model_load_failed")
        raise model_not_found(name, self.names() + self.loading)

    def generative(self, name: str) -> GenerativeBackend:
        """Like `get`, but a model that cannot chat or complete is a client error here."""
        backend = self.get(name)
        if not hasattr(backend, "chat"):
            raise self._wrong_route(backend)
        return self.guard.wrap(backend) if self.guard is not None else backend

    def embedder(self, name: str) -> Any:
        """The backend for /v1/embeddings: a generative model (pooled) or an embedding model."""
        backend = self.get(name)
        if not hasattr(backend, "embeddings"):
            raise self._wrong_route(backend)
        return backend

    @staticmethod
    def _wrong_route(backend: Any) -> APIError:
        purpose = getattr(backend, "purpose", "generation")
        route = {"classification": "POST /v1/classify", "embeddings": "POST /v1/embeddings"}.get(purpose)
        kind = {"classification": "a classifier", "embeddings": "an embedding model"}.get(purpose, "a model")
        where = f"; send its inputs to {route}" if route else ""
        return APIError(400, f"The model `{backend.name}` is {kind}{where}.", param="model",
                        code="model_not_generative" if purpose != "generation" else "unsupported_model")

    def generative_names(self) -> list[str]:
        return [b.name for b in self.all() if hasattr(b, "chat")]

    def stats(self) -> list[tuple[str, EngineStats]]:
        out = []
        for b in self.all():
            if hasattr(b, "stats"):  # the local engines
                try:
                    out.append((b.name, b.stats()))
                except Exception as e:  # a scrape must not fail because one engine is stopping
                    log.warning("stats of %s failed: %s", b.name, e)
        return out

    def close(self) -> None:
        self._closed.set()
        for b in self.all():
            try:
                b.close()
            except Exception as e:
                log.warning("stopping %s failed: %s", b.name, e)
