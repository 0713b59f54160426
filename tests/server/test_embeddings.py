"""POST /v1/embeddings through the official client on the bundled model: shapes, base64, dimensions,
token-id input, and 400s for what a client can get wrong."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
from server_harness import REAL


@pytest.fixture
def client(real_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.url + "/v1", api_key="none", max_retries=0)


@pytest.mark.slow
def test_strings_give_unit_vectors_in_order_and_base64_round_trips(client, real_server):
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Stock markets fell sharply today.",
             "今天天气很好。"]
    resp = client.embeddings.create(model=REAL, input=texts)  # the client asks for base64 by default
    assert [d.index for d in resp.data] == [0, 1, 2, 3]
    vecs = np.array([d.embedding for d in resp.data])
    assert vecs.shape == (4, 576)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert resp.usage.prompt_tokens > 0 and resp.usage.total_tokens == resp.usage.prompt_tokens
    floats = httpx.post(real_server.url + "/v1/embeddings", timeout=60,
                        json={"model": REAL, "input": texts, "encoding_format": "float"}).json()
    assert np.allclose(np.array([d["embedding"] for d in floats["data"]]), vecs, atol=1e-6)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2]  # the two cat sentences are closer than cat vs. markets


@pytest.mark.slow
def test_dimensions_and_token_ids(client, real_server):
    full = client.embeddings.create(model=REAL, input="hello world", encoding_format="float").data[0].embedding
    short = client.embeddings.create(model=REAL, input="hello world", dimensions=64).data[0].embedding
    assert len(short) == 64
    expected = np.array(full[:64]) / np.linalg.norm(full[:64])
    assert np.allclose(short, expected, atol=1e-5)
    ids = httpx.post(real_server.url + "/tokenize", json={"model": REAL, "prompt": "hello world"}).json()["tokens"]
    by_ids = client.embeddings.create(model=REAL, input=[ids, ids[:1]], encoding_format="float")
    assert np.allclose(by_ids.data[0].embedding, full, atol=1e-5)
    assert len(by_ids.data) == 2


@pytest.mark.slow
@pytest.mark.parametrize("body, param", [
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": ["ok", ""]}, "input"),
    ({"input": [10**9]}, "input"),
    ({"input": "hi", "dimensions": 100000}, "dimensions"),
    ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "hi", "model": "no-such-model"}, "model"),
])
def test_bad_requests_are_400s_naming_the_parameter(real_server, body, param):
    r = httpx.post(real_server.url + "/v1/embeddings", timeout=60, json={"model": REAL, **body})
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"]["param"] == param
