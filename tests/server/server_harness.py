"""Real uvicorn servers on free ports: a tiny random model (fast) and the bundled SmolLM2 (slow).

The tiny model is a 2-layer Llama with random weights over a byte-level vocabulary, so any text
tokenizes and the default ChatML template renders; its outputs are gibberish but deterministic.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import tempfile
import threading
import time

import torch
import uvicorn
from fastapi import FastAPI, Request  # at module level: the route's annotations resolve here
from fastapi.responses import StreamingResponse
from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, pre_tokenizers

from aigc.engine.engine import Engine
from aigc.models.config import ModelConfig
from aigc.models.transformer import Transformer
from aigc.server.app import create_app
from aigc.server.backends import ModelBackends
from aigc.server.local_backend import LocalBackend
from aigc.settings import Settings
from aigc.tokenizer import Tokenizer

TINY = "tiny"
REAL = "smollm2-135m-instruct"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_tokenizer(chat_template: str | None = None) -> Tokenizer:
    """256 byte tokens (GPT-2's byte-to-unicode alphabet), no merges, plus ChatML specials;
    `chat_template`: its own template (default: none, so ChatML)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(alphabet))}
    backend = Backend(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return Tokenizer(backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=chat_template)


def tiny_engine(tokenizer: Tokenizer, *, max_concurrency: int = 8, max_queue: int = 16, ctx: int = 512) -> Engine:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128, num_layers=2,
                      num_heads=4, num_kv_heads=2, max_position_embeddings=ctx, eos_token_id=2)
    model = Transformer(cfg)
    model.init_weights(std=0.2)  # wide init: peaked distributions, no near-ties under greedy
    model.eval().requires_grad_(False)
    return Engine(model, tokenizer, TINY, max_concurrency=max_concurrency, max_queue=max_queue, max_context=ctx)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn in a daemon thread with its own event loop; `url` once it listens."""

    def __init__(self, app, port: int | None = None):
        self.app = app
        self.health_while_loading: int | None = None
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def tiny_app(*, max_concurrency: int = 8, max_queue: int = 16, ctx: int = 512, remotes: list | None = None,
             **settings):
    """An app serving a fresh tiny engine (plus `remotes`); `settings` go to `Settings` (api_keys, ...)."""
    tokenizer = byte_tokenizer()
    engine = tiny_engine(tokenizer, max_concurrency=max_concurrency, max_queue=max_queue, ctx=ctx)
    engine.start()
    backends = ModelBackends([LocalBackend(TINY, engine, tokenizer, max_context=engine.max_context), *(remotes or [])])
    if "database_url" not in settings:  # the app database (metrics history, ...) in a fresh folder, not ./aigc.db
        settings["database_url"] = f"sqlite:///{tempfile.mkdtemp(prefix='aigc-test-')}/web.db"
    return create_app(Settings(models=[], **settings), backends)


def scripted_chat_upstream(pieces: list[str], seen: list[dict] | None = None):
    """An OpenAI-compatible upstream (for `--remote`) whose chat completions stream `pieces` and
    stop; each request body it receives is appended to `seen`."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        if seen is not None:
            seen.append(body)

        def chunk(**delta) -> str:
            finish = delta.pop("finish", None)
            return "data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "model": "m", "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

        async def events():
            yield chunk(role="assistant")
            for piece in pieces:
                yield chunk(content=piece)
            yield chunk(finish="stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of Prometheus metric `name` (in /metrics `text`) whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total
