"""Reasoning models: the `<think>` splitter (re-chunked at every split point), and scripted models
behind the real server through the official client -- chat (streamed and not), a template that
opens the block itself, a reply cut while thinking, tool calls, chat_template_kwargs, multi-turn,
the Responses API, a remote in front, and the web app's events and stored messages."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import openai
import pytest
from server_harness import ServerThread, byte_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))

from app_harness import ScriptedEngine, events_of  # noqa: E402

from aigc.server.app import create_app  # noqa: E402
from aigc.server.backends import ModelBackends  # noqa: E402
from aigc.server.local_backend import LocalBackend  # noqa: E402
from aigc.server.reasoning import ReasoningStream, split_reasoning  # noqa: E402
from aigc.settings import Settings  # noqa: E402

# ---------------------------------------------------------------------------- the splitter

CASES = [  # (output, the prompt opened the block, reasoning, content)
    ("<think>I reason</think>Answer", False, "I reason", "Answer"),
    ("<think>\nI reason\n</think>\n\nAnswer\n", False, "I reason", "Answer\n"),
    ("\n<think>a < b </thin k</think> x", False, "a < b </thin k", "x"),
    ("I reason</think>\n\nAnswer", True, "I reason", "Answer"),
    ("<think>I reason</think>Answer", True, "I reason", "Answer"),  # the tag repeated after the prompt's
    ("Plain answer: <think> is a tag </think>", False, "", "Plain answer: <think> is a tag </think>"),
    ("<think>cut off while thin", False, "cut off while thin", ""),
    ("cut off while opened </thi", True, "cut off while opened </thi", ""),
    ("  spaced answer", False, "", "  spaced answer"),
    ("<thin", False, "", "<thin"),
    ("", False, "", ""),
    ("<think>\n\n</think>\n\nHi", False, "", "Hi"),
    ("<think>思考</think>答案", False, "思考", "答案"),
]


def _streamed(pieces: list[str], opened: bool) -> tuple[str, str]:
    stream = ReasoningStream(opened)
    reasoning, content = [], []
    for out in [stream.push(p) for p in pieces] + [stream.finish()]:
        assert not (out[0] and "".join(content)), "reasoning after the answer started"
        reasoning.append(out[0])
        content.append(out[1])
    return "".join(reasoning), "".join(content)


@pytest.mark.parametrize(("text", "opened", "reasoning", "content"), CASES)
def test_the_splitter_at_every_split(text, opened, reasoning, content):
    assert split_reasoning(text, opened=opened) == (reasoning, content)
    assert _streamed(list(text), opened) == (reasoning, content)  # one character at a time
    for cut in range(1, len(text)):
        assert _streamed([text[:cut], text[cut:]], opened) == (reasoning, content), cut
    for a in range(1, len(text), 3):
        for b in range(a + 1, len(text), 5):
            assert _streamed([text[:a], text[a:b], text[b:]], opened) == (reasoning, content), (a, b)


# ---------------------------------------------------------------------------- scripted models

# Qwen3's shape: earlier turns' reasoning rendered in a think block; enable_thinking=false puts an
# empty block in the generation prompt.
THINKING = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n"
    "{% if m.get('reasoning_content') %}<think>\n{{ m['reasoning_content'] }}\n</think>\n\n{% endif %}"
    "{{ m['content'] or '' }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
# DeepSeek-R1's shape: the generation prompt opens the block.
OPENING = THINKING.replace("<|im_start|>assistant\n{% if enable", "<|im_start|>assistant\n<think>\n{% if enable")

# Tags as whole tokens, as Qwen3's vocabulary has them: 6 of the 8 tokens are the block's.
REPLY = ["<think>", "\n", "I", " reason", "\n", "</think>", "\n\n", "Answer"]
SPLIT_TAGS = ["<th", "ink>\n", "I re", "ason", "</thi", "nk>", "\n\nAns", "wer"]
ASK = [{"role": "user", "content": "Why?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                          "required": ["city"]}}}
MODELS = {  # name -> (chat template, --reasoning-parser)
    "thinker": (THINKING, "auto"),
    "opener": (OPENING, "auto"),
    "plain": (None, "auto"),  # ChatML: nothing says it thinks
    "forced": (None, "think"),
    "unparsed": (THINKING, "none"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    engines = {name: ScriptedEngine(words=REPLY, once=True) for name in MODELS}
    backends = ModelBackends([LocalBackend(name, engines[name], byte_tokenizer(template), max_context=2048,
                                           reasoning_parser=parser) for name, (template, parser) in MODELS.items()])
    db = tmp_path_factory.mktemp("reasoning") / "app.db"
    server = ServerThread(create_app(Settings(models=[], database_url=f"sqlite:///{db}"), backends)).start()
    yield server, engines
    server.stop()


@pytest.fixture
def client(served):
    server, engines = served
    for engine in engines.values():
        engine.words = REPLY
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def _prompt(engine: ScriptedEngine) -> str:
    """The last prompt the engine was given, as text."""
    return byte_tokenizer().decode(engine.requests[-1].prompt_token_ids)


def _stream(client, model: str, **kw) -> tuple[str, str, list, str | None]:
    """(reasoning, content, chunks, finish_reason) of a streamed chat completion."""
    chunks = list(client.chat.completions.create(model=model, messages=ASK, stream=True, **kw))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = [d.model_extra.get("reasoning_content") or "" for d in deltas]
    content = [d.content or "" for d in deltas]
    first_answer = next((i for i, t in enumerate(content) if t), len(content))
    assert not any(reasoning[first_answer:]), "reasoning after the answer started"
    return "".join(reasoning), "".join(content), chunks, chunks[-1].choices[0].finish_reason


@pytest.mark.parametrize("words", [REPLY, SPLIT_TAGS])
def test_reasoning_content_through_the_official_client(client, served, words):
    served[1]["thinker"].words = words
    reply = client.chat.completions.create(model="thinker", messages=ASK)
    message = reply.choices[0].message
    assert (message.reasoning_content, message.content) == ("I reason", "Answer")
    assert message.model_extra["reasoning_content"] == "I reason"
    assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens == len(words)
    reasoning, content, chunks, finish = _stream(client, "thinker")
    assert (reasoning, content, finish) == ("I reason", "Answer", "stop")
    assert sum(bool(c.choices and c.choices[0].delta.model_extra.get("reasoning_content")) for c in chunks) > 1


def test_a_prompt_that_opens_the_block(client, served):
    served[1]["opener"].words = ["I rea", "son</th", "ink>\n\n", "Answer"]
    message = client.chat.completions.create(model="opener", messages=ASK).choices[0].message
    assert _prompt(served[1]["opener"]).endswith("<|im_start|>assistant\n<think>\n")
    assert (message.reasoning_content, message.content) == ("I reason", "Answer")
    assert _stream(client, "opener")[:2] == ("I reason", "Answer")
    served[1]["opener"].words = REPLY  # the model writes the opening tag again: dropped
    assert _stream(client, "opener")[:2] == ("I reason", "Answer")


def test_a_reply_cut_while_thinking_is_all_reasoning(client):
    reply = client.chat.completions.create(model="thinker", messages=ASK, max_tokens=4)
    assert reply.choices[0].finish_reason == "length"
    assert (reply.choices[0].message.reasoning_content, reply.choices[0].message.content) == ("I reason", "")
    reasoning, content, _, finish = _stream(client, "thinker", max_tokens=4)
    assert (reasoning, content, finish) == ("I reason", "", "length")


def test_which_models_are_parsed(client):
    raw = "".join(REPLY)
    for model, expected in [("plain", (None, raw)), ("unparsed", (None, raw)), ("forced", ("I reason", "Answer"))]:
        message = client.chat.completions.create(model=model, messages=ASK).choices[0].message
        assert (message.reasoning_content, message.content) == expected, model


def test_a_tool_call_thought_about_is_not_called(client, served):
    thought = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    served[1]["thinker"].words = ["<think>", "Maybe ", thought[:20], thought[20:], "</think>", "\n\n", call[:9], call[9:]]
    reply = client.chat.completions.create(model="thinker", messages=ASK, tools=[WEATHER])
    message = reply.choices[0].message
    assert message.reasoning_content == "Maybe " + thought and not message.content
    assert [c.function.arguments for c in message.tool_calls] == ['{"city": "Oslo"}']
    assert reply.choices[0].finish_reason == "tool_calls"
    reasoning, content, chunks, finish = _stream(client, "thinker", tools=[WEATHER])
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert reasoning == "Maybe " + thought and finish == "tool_calls"
    assert "".join(t.function.arguments or "" for t in calls) == '{"city": "Oslo"}'
    # A forced call constrains the output from its first token: no block, even after an opening prompt.
    served[1]["opener"].words = [call]
    forced = client.chat.completions.create(model="opener", messages=ASK, tools=[WEATHER], tool_choice="required")
    assert forced.choices[0].message.reasoning_content is None and len(forced.choices[0].message.tool_calls) == 1


def test_chat_template_kwargs_and_earlier_reasoning_reach_the_template(client, served):
    served[1]["thinker"].words = ["Answer"]
    message = client.chat.completions.create(model="thinker", messages=ASK, extra_body={
        "chat_template_kwargs": {"enable_thinking": False}}).choices[0].message
    assert _prompt(served[1]["thinker"]).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert (message.reasoning_content, message.content) == (None, "Answer")
    history = [*ASK, {"role": "assistant", "content": "Because.", "reasoning_content": "I reason"},
               {"role": "user", "content": "More?"}]
    client.chat.completions.create(model="thinker", messages=history)
    assert "<|im_start|>assistant\n<think>\nI reason\n</think>\n\nBecause.<|im_end|>" in _prompt(served[1]["thinker"])


def test_the_responses_api_gives_a_reasoning_item(client, served):
    first = client.responses.create(model="thinker", input="Why?")
    assert [o.type for o in first.output] == ["reasoning", "message"]
    assert first.output[0].content[0].text == "I reason" and first.output[0].summary == []
    assert first.output_text == "Answer" and first.usage.output_tokens_details.reasoning_tokens == 6
    client.responses.create(model="thinker", input="More?", previous_response_id=first.id)
    assert "<think>\nI reason\n</think>\n\nAnswer<|im_end|>" in _prompt(served[1]["thinker"])
    # the client sends the output items back itself (manual context): the reasoning item too
    items = [{"role": "user", "content": "Why?"}, *[o.model_dump(exclude_none=True) for o in first.output],
             {"role": "user", "content": "More?"}]
    client.responses.create(model="thinker", input=items, store=False)
    assert "<think>\nI reason\n</think>\n\nAnswer<|im_end|>" in _prompt(served[1]["thinker"])

    served[1]["thinker"].words = SPLIT_TAGS
    with client.responses.stream(model="thinker", input="Why?") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:6] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.reasoning_text.delta",
                         "response.reasoning_text.delta"]
    closed = kinds.index("response.reasoning_text.done")
    assert kinds[closed:closed + 4] == ["response.reasoning_text.done", "response.content_part.done",
                                        "response.output_item.done", "response.output_item.added"]
    assert "response.output_text.delta" in kinds[closed:] and kinds[-1] == "response.completed"
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "I reason" and final.output_text == "Answer"
    assert final.usage.output_tokens_details.reasoning_tokens == 5  # "<th" decided nothing yet: not counted

    served[1]["thinker"].words = REPLY
    cut = client.responses.create(model="thinker", input="Why?", max_output_tokens=4)
    assert cut.status == "incomplete" and [o.type for o in cut.output] == ["reasoning"]


def _app_reply(http: httpx.Client, model: str, content: str) -> tuple[list[dict], dict]:
    cid = http.post("/api/conversations", json={"model": model}).json()["id"]
    return events_of(http.post(f"/api/conversations/{cid}/messages", json={"content": content})), {"id": cid}


def test_the_web_app_streams_and_stores_reasoning_from_local_and_remote_models(served, tmp_path):
    server, engines = served
    proxy = ServerThread(create_app(Settings(models=[], remotes=[f"far={server.url}/v1,model=thinker"],
                                             database_url=f"sqlite:///{tmp_path}/proxy.db"))).start()
    try:
        far = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
        message = far.chat.completions.create(model="far", messages=ASK).choices[0].message
        assert (message.reasoning_content, message.content) == ("I reason", "Answer")  # the remote's, relayed
        assert _stream(far, "far")[:2] == ("I reason", "Answer")
        assert far.responses.create(model="far", input="Why?", store=False).output[0].type == "reasoning"
    finally:
        proxy.stop()

    with httpx.Client(base_url=server.url, timeout=30) as http:
        for model in ("thinker", "opener"):
            engines[model].words = REPLY if model == "thinker" else ["I reason", "</think>", "Answer"]
            events, conv = _app_reply(http, model, "Why?")
            kinds = [e["type"] for e in events]
            assert kinds[0] == "start" and kinds[-1] == "done"
            assert "".join(e["text"] for e in events if e["type"] == "reasoning") == "I reason"
            assert "".join(e["text"] for e in events if e["type"] == "delta") == "Answer"
            assert kinds.index("reasoning") < kinds.index("delta")
            assert (events[-1]["message"]["reasoning"], events[-1]["message"]["content"]) == ("I reason", "Answer")
            stored = http.get(f"/api/conversations/{conv['id']}").json()["messages"]
            assert [(m["role"], m["content"], m["reasoning"]) for m in stored] == [
                ("user", "Why?", None), ("assistant", "Answer", "I reason")]
            # the next turn: the answer goes back to the model, its reasoning does not
            events_of(http.post(f"/api/conversations/{conv['id']}/messages", json={"content": "More?"}))
            prompt = _prompt(engines[model])
            assert "Answer<|im_end|>" in prompt and "I reason" not in prompt
            exported = http.get(f"/api/conversations/{conv['id']}/export").json()
            assert exported["messages"][1]["reasoning"] == "I reason"
            copy = http.post("/api/conversations/import", json=exported).json()
            assert copy["messages"][1]["reasoning"] == "I reason"
