"""POST /v1/classify against a real server serving a classifier directory."""

import time

import httpx
import openai
import pytest
import torch
from server_harness import ServerThread, byte_tokenizer

from aigc.models.classifier import SequenceClassifier
from aigc.models.config import ModelConfig
from aigc.models.transformer import Transformer
from aigc.server.app import create_app
from aigc.settings import Settings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    torch.manual_seed(0)
    tok = byte_tokenizer()
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, max_position_embeddings=128, tie_word_embeddings=True)
    backbone = Transformer(cfg)
    backbone.init_weights()
    folder = tmp_path_factory.mktemp("models") / "sentiment"
    SequenceClassifier(backbone, ["neg", "pos"], pad_token_id=tok.pad_token_id or 0).save_pretrained(
        folder, tokenizer=tok)
    app = create_app(Settings(models=["sentiment"], models_dir=folder.parent))
    srv = ServerThread(app).start()
    deadline = time.monotonic() + 60
    while httpx.get(srv.url + "/health").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(srv.url + "/health").text
        time.sleep(0.1)
    yield srv
    srv.stop()


def test_classify_one_and_many(server):
    r = httpx.post(server.url + "/v1/classify", json={"model": "sentiment", "input": "what a great film"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "sentiment" and body["object"] == "list"
    (item,) = body["data"]
    assert item["index"] == 0 and item["label"] in ("neg", "pos")
    assert set(item["probabilities"]) == {"neg", "pos"}
    assert abs(sum(item["probabilities"].values()) - 1) < 1e-4
    assert item["label"] == max(item["probabilities"], key=item["probabilities"].get)
    assert body["usage"]["prompt_tokens"] > 0
    many = httpx.post(server.url + "/v1/classify", json={"model": "sentiment", "input": ["good", "bad", "ok"]})
    assert [d["index"] for d in many.json()["data"]] == [0, 1, 2]


def test_classify_errors(server):
    empty = httpx.post(server.url + "/v1/classify", json={"model": "sentiment", "input": []})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
    blank = httpx.post(server.url + "/v1/classify", json={"model": "sentiment", "input": ["  "]})
    assert blank.status_code == 400
    unknown = httpx.post(server.url + "/v1/classify", json={"model": "nope", "input": "x"})
    assert unknown.status_code == 404
    missing = httpx.post(server.url + "/v1/classify", json={"model": "sentiment"})
    assert missing.status_code == 400


def test_classifier_is_listed_but_cannot_chat(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x")
    assert "sentiment" in [m.id for m in client.models.list().data]
    with pytest.raises(openai.BadRequestError, match="classifier"):
        client.chat.completions.create(model="sentiment", messages=[{"role": "user", "content": "hi"}])
