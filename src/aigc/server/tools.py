"""Tool calling for /v1/chat/completions: `tools`, `tool_choice`, `parallel_tool_calls`.

The call markup is Hermes' (Qwen2.5's and NousResearch's): each call is
`<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`. A chat template that knows tools
(its source mentions `tools`) renders them and the conversation's tool calls and results itself, the
way transformers passes them (arguments as objects). Any other template gets a system prompt that
lists the functions and asks for that markup; assistant tool calls are written back as the markup
and tool results as `<tool_response>` user turns, so every template can hold the conversation.

`tool_choice`: "auto" (the model decides; calls in its output are parsed), "none" (tools stay in
the prompt, nothing is parsed), "required" or a named function: decoding is constrained to the
markup with arguments valid against the function's JSON schema (structured outputs), so a forced call
always parses. Output: `message.tool_calls` (stable ids `call_<hex>`), `finish_reason: "tool_calls"`.
Streaming (`ToolStream`): content deltas pass through; a call is sent once its markup closed, as a
chunk with index, id, type and function.name (arguments "") and one with the complete arguments, so
the fragments concatenate to exactly the final arguments.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aigc.generation.guided import GuidedDecoding, compact_schema
from aigc.server.errors import bad_request
from aigc.server.reasoning import partial_suffix

OPEN, CLOSE = "<tool_call>", "</tool_call>"

FALLBACK_PROMPT = """You can call functions. The functions, as JSON schemas:
{functions}

To call a function, answer with one block per call, exactly:
<tool_call>
{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}
</tool_call>
Call functions only when they help; otherwise answer normally."""


@dataclass
class ToolSpec:
    functions: list[dict[str, Any]]  # {"name", "description", "parameters"}
    choice: str  # "auto" | "none" | "required" | "function"
    forced_name: str | None = None
    parallel: bool = True

    @property
    def parses(self) -> bool:
        return self.choice != "none"


def tool_spec(tools: list[dict[str, Any]] | None, tool_choice: Any, parallel: bool | None) -> ToolSpec | None:
    """Check `tools` / `tool_choice` (400s naming the parameter); None when the request has no tools."""
    if tool_choice is not None and not tools and tool_choice != "none":
        raise bad_request("tool_choice is set but no tools were given.", param="tool_choice")
    if not tools:
        return None
    functions: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise bad_request(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}.", param="tools")
        name = fn.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or not all(c.isalnum() or c in "_-" for c in name):
            raise bad_request(f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'.", param="tools")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise bad_request(f"tools[{i}].function.parameters must be a JSON schema object.", param="tools")
        if any(f["name"] == name for f in functions):
            raise bad_request(f"tools has two functions named {name!r}.", param="tools")
        functions.append({"name": name, "description": fn.get("description", ""), "parameters": params})
    choice, forced = "auto", None
    if tool_choice is None or tool_choice in ("auto", "none", "required"):
        choice = tool_choice or "auto"
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        forced = tool_choice["function"].get("name")
        if forced not in [f["name"] for f in functions]:
            raise bad_request(f"tool_choice names function {forced!r}, which is not in tools.", param="tool_choice")
        choice = "function"
    else:
        raise bad_request('tool_choice must be "auto", "none", "required" or '
                          '{"type": "function", "function": {"name": ...}}.', param="tool_choice")
    return ToolSpec(functions, choice, forced, True if parallel is None else bool(parallel))


def template_knows_tools(template: str | None) -> bool:
    return bool(template) and "tools" in template


def prompt_messages(messages: list[dict[str, Any]], spec: ToolSpec | None, knows_tools: bool
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages (and the `tools` argument) for the chat template."""
    if spec is None and not any(m.get("role") == "tool" or m.get("tool_calls") for m in messages):
        return messages, None
    if knows_tools:
        tools = [{"type": "function", "function": f} for f in spec.functions] if spec else None
        return [_with_object_arguments(m) for m in messages], tools
    out: list[dict[str, Any]] = []
    if spec is not None:
        listing = "\n".join(json.dumps(f, ensure_ascii=False) for f in spec.functions)
        system = FALLBACK_PROMPT.format(functions=listing)
        if messages and messages[0].get("role") == "system":
            first = messages[0].get("content") or ""
            system = f"{first}\n\n{system}" if isinstance(first, str) else system
            messages = messages[1:]
        out.append({"role": "system", "content": system})
    for m in messages:
        if m.get("role") == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{_text(m.get('content'))}\n</tool_response>"})
        elif m.get("role") == "assistant" and m.get("tool_calls"):
            blocks = [f"{OPEN}\n{json.dumps(_call_object(c), ensure_ascii=False)}\n{CLOSE}" for c in m["tool_calls"]]
            text = _text(m.get("content"))
            out.append({"role": "assistant", "content": "\n".join(([text] if text else []) + blocks)})
        else:
            out.append(m)
    return out, None


def forced_call_grammar(spec: ToolSpec) -> GuidedDecoding | None:
    """For "required" / a named function: a grammar that admits only well-formed calls."""
    if spec.choice not in ("required", "function"):
        return None
    functions = [f for f in spec.functions if spec.choice == "required" or f["name"] == spec.forced_name]
    variants = [{"type": "object", "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
                 "required": ["name", "arguments"], "additionalProperties": False} for f in functions]
    schema = compact_schema(variants[0] if len(variants) == 1 else {"anyOf": variants})
    call = f'"{OPEN}\\n" %json {json.dumps(schema, ensure_ascii=False)} "\\n{CLOSE}"'
    # "required" with parallel calls: up to one call per function (a small model would otherwise go
    # on calling until max_tokens); a named function: exactly one call
    more = len(functions) - 1 if spec.parallel and spec.choice == "required" else 0
    rule = "call" + "".join(' ("\\n" call' for _ in range(more)) + ")?" * more
    return GuidedDecoding.lark(f"start: {rule}\ncall: {call}\n", param="tool_choice")


# ---------------------------------------------------------------------------- the model's output


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _call_object(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"name": fn.get("name"), "arguments": _arguments_object(fn.get("arguments"))}


def _arguments_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments if arguments is not None else {}


def _with_object_arguments(m: dict[str, Any]) -> dict[str, Any]:
    """transformers passes tool-call arguments to templates as objects (OpenAI sends JSON strings)."""
    if not m.get("tool_calls"):
        return m
    calls = [{**c, "function": {**(c.get("function") or {}),
                                "arguments": _arguments_object((c.get("function") or {}).get("arguments"))}}
             for c in m["tool_calls"]]
    return {**m, "tool_calls": calls}


def _parse_block(body: str, names: set[str]) -> dict[str, Any] | None:
    try:
        return _call_from(json.loads(body), names)
    except json.JSONDecodeError:
        return None


def _call_from(obj: Any, names: set[str]) -> dict[str, Any] | None:
    """{"name", "arguments" (or Llama's "parameters")} naming one of the tools -> an OpenAI tool call."""
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return {"id": new_call_id(), "type": "function",
            "function": {"name": obj["name"],
                         "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}}


# Outputs that are nothing but calls, as other model families write them: Llama 3.1's bare JSON
# object (after an optional <|python_tag|>) and Mistral's [TOOL_CALLS] list.
WHOLE_PREFIXES = ("<|python_tag|>", "[TOOL_CALLS]")


def _whole_output_calls(text: str, names: set[str]) -> list[dict[str, Any]] | None:
    body = text.strip()
    for prefix in WHOLE_PREFIXES:
        if body.startswith(prefix):
            body = body[len(prefix):].strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    objs = obj if isinstance(obj, list) else [obj]
    calls = [_call_from(o, names) for o in objs]
    return calls if calls and all(c is not None for c in calls) else None


def parse_tool_calls(text: str, spec: ToolSpec) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) of a finished output. Blocks that do not parse stay in the content."""
    stream = ToolStream(spec)
    events = stream.push(text) + stream.finish()
    content = "".join(e[1] for e in events if e[0] == "content")
    calls = [{k: v for k, v in e[1].items() if k != "index"} for e in events if e[0] == "call"]
    if calls:
        content = content.strip()
    return (content or None), calls


@dataclass
class ToolStream:
    """Splits streamed text into content and tool calls. `push`/`finish` return events:
    ("content", text) and ("call", {"id", "type", "function": {"name", "arguments"}})."""

    spec: ToolSpec
    _buf: str = ""
    _in_call: bool = False
    _after_call: bool = False  # a call just closed: one "\n" (the separator between calls) is dropped
    _mode: str = "start"  # start (nothing decided) | markup (<tool_call> blocks) | whole (held to the end)
    calls: int = 0
    _names: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._names = {f["name"] for f in self.spec.functions}

    def push(self, text: str) -> list[tuple[str, Any]]:
        self._buf += text
        if self._mode == "start":
            head = self._buf.lstrip()
            if not head or any(p.startswith(head) for p in WHOLE_PREFIXES):
                return []  # not decided yet: only whitespace, or the start of a prefix
            # An output that opens like JSON may be a whole-output call: held until its end.
            whole = head[0] in "{[" or head.startswith(WHOLE_PREFIXES)
            self._mode = "whole" if whole else "markup"
        if self._mode == "whole":
            return []
        events: list[tuple[str, Any]] = []
        while self._buf:
            if self._after_call:
                self._after_call = False
                if self._buf.startswith("\n"):
                    self._buf = self._buf[1:]
                    continue
            if not self._in_call:
                at = self._buf.find(OPEN)
                if at < 0:
                    keep = partial_suffix(self._buf, OPEN)  # may be the start of "<tool_call>"
                    emit, self._buf = self._buf[:len(self._buf) - keep], self._buf[len(self._buf) - keep:]
                    if emit:
                        events.append(("content", emit))
                    break
                if at:
                    events.append(("content", self._buf[:at]))
                self._buf = self._buf[at + len(OPEN):]
                self._in_call = True
            else:
                end = self._buf.find(CLOSE)
                if end < 0:
                    break
                body, self._buf = self._buf[:end], self._buf[end + len(CLOSE):]
                self._in_call = False
                call = _parse_block(body.strip(), self._names)
                if call is None:
                    events.append(("content", OPEN + body + CLOSE))
                else:
                    call["index"] = self.calls  # which call of this output (streamed chunks carry it)
                    self.calls += 1
                    events.append(("call", call))
                    self._after_call = True
        return events

    def finish(self) -> list[tuple[str, Any]]:
        """The end of the output: an unclosed block is text, as is a held-back partial marker; a held
        whole output is calls if it parses as them, else text."""
        if self._mode == "whole":
            calls = _whole_output_calls(self._buf, self._names)
            if calls is not None:
                self._buf = ""
                events: list[tuple[str, Any]] = []
                for call in calls:
                    call["index"] = self.calls
                    self.calls += 1
                    events.append(("call", call))
                return events
            if OPEN in self._buf:  # it opened like JSON but holds markup after all
                held, self._buf, self._mode = self._buf, "", "markup"
                return self.push(held) + self.finish()
        rest = (OPEN + self._buf) if self._in_call else self._buf
        self._buf, self._in_call = "", False
        return [("content", rest)] if rest else []

