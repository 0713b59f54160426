"""Where --redact-pii applies: conversations saved redacted (store), requests to a --remote
backend redacted with the reply's placeholders restored (remote), and log lines (logs)."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import openai
import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "apps"), str(TESTS / "server")]

from app_harness import events_of, scripted_server  # noqa: E402
from server_harness import ServerThread, scripted_chat_upstream  # noqa: E402

from aigc.safety.log_redaction import RedactingFilter, install_log_redaction  # noqa: E402
from aigc.safety.policy import parse_redaction  # noqa: E402
from aigc.server.app import create_app  # noqa: E402
from aigc.settings import Settings  # noqa: E402

PHONE, CN_ID = "13812345678", "11010519491231002X"
MESSAGE = f"我的手机是{PHONE}，身份证号{CN_ID}，请帮我查订单。"


def test_a_chat_message_is_stored_redacted(tmp_path):
    from server_harness import byte_tokenizer

    server, engine = scripted_server(tmp_path / "app.db", redact_pii=["logs", "store"])
    try:
        import httpx

        with httpx.Client(base_url=server.url, timeout=30) as http:
            cid = http.post("/api/conversations", json={}).json()["id"]
            events = events_of(http.post(f"/api/conversations/{cid}/messages",
                                         json={"content": MESSAGE, "params": {"max_tokens": 3}}))
            assert PHONE in byte_tokenizer().decode(engine.requests[-1].prompt_token_ids)  # the model read it
            stored = http.get(f"/api/conversations/{cid}").json()["messages"]
            assert stored[0]["content"] == "我的手机是[PHONE_1]，身份证号[CN_ID_1]，请帮我查订单。"
            assert events[0]["user_message"]["content"] == stored[0]["content"]
            assert PHONE not in json.dumps(http.get(f"/api/conversations/{cid}/export").json(), ensure_ascii=False)
    finally:
        server.stop()


def test_a_remote_sees_placeholders_and_the_user_sees_their_data():
    seen: list[dict] = []
    upstream = ServerThread(scripted_chat_upstream(["好的，我们会打 [PHO", "NE_1] 联系您，", "证件 [CN_ID_1] 已核对。"], seen)).start()
    proxy = ServerThread(create_app(Settings(models=[], remotes=[f"cloud={upstream.url}/v1,model=m"],
                                             redact_pii=["remote"]))).start()
    try:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model="cloud", stream=True, messages=[
            {"role": "system", "content": "You are a support agent."}, {"role": "user", "content": MESSAGE}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        sent = json.dumps(seen[-1], ensure_ascii=False)
        assert PHONE not in sent and CN_ID not in sent and "[PHONE_1]" in sent and "[CN_ID_1]" in sent
        assert text == f"好的，我们会打 {PHONE} 联系您，证件 {CN_ID} 已核对。"
    finally:
        proxy.stop()
        upstream.stop()


def test_log_lines_are_redacted():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    installed = None
    try:
        installed = install_log_redaction()
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        logging.getLogger("aigc.server").warning("reply failed for %s: card 4111 1111 1111 1111 from 10.0.0.7",
                                                 MESSAGE)
        try:
            raise ValueError(f"bad input {PHONE}")
        except ValueError:
            logging.getLogger("aigc.server").exception("unhandled")
    finally:
        root.removeHandler(handler)
        for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "aigc"):  # leave other tests' logs alone
            for h in logging.getLogger(name).handlers:
                h.removeFilter(installed)
    logged = out.getvalue()
    assert PHONE not in logged and CN_ID not in logged and "4111" not in logged and "10.0.0.7" not in logged
    assert "[PHONE]" in logged and "[CN_ID]" in logged and "[BANK_CARD]" in logged and "[IP]" in logged


def test_the_redaction_setting_is_checked():
    assert parse_redaction("logs, remote") == ["logs", "remote"] and parse_redaction("none") == []
    with pytest.raises(ValueError, match="--redact-pii 'everywhere'"):
        parse_redaction("everywhere")
