"""Models other programs downloaded (HF cache, Ollama, LM Studio): listed by `aigc models`, named by
`hf:`, `ollama:` and `lmstudio:`, loaded like any GGUF file. The stores are fakes laid out in tmp dirs
as those programs lay them out; no network."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from aigc.cli.main import main
from aigc.models import discovery
from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import write_gguf
from aigc.models.registry import (
    HubRef,
    ModelNotFoundError,
    parse_hub_ref,
    resolve_model,
    select_ggufs,
)

TOKENS = ["t", "1"] + [f"t{i}" for i in range(254)]
GGUF_TOKENIZER = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": TOKENS,
                  "tokenizer.ggml.token_type": [1] * 256, "tokenizer.ggml.merges": ["t 1"],
                  "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}


def write_tiny_gguf(path: Path) -> Path:
    """A real, loadable llama GGUF with random weights and a byte-level BPE tokenizer."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
                         num_kv_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
                         bos_token_id=0, eos_token_id=255)
    d, f, v, kv = 32, 64, 256, 16
    shapes = {"input_layernorm": (d,), "post_attention_layernorm": (d,), "self_attn.q_proj": (d, d),
              "self_attn.k_proj": (kv, d), "self_attn.v_proj": (kv, d), "self_attn.o_proj": (d, d),
              "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f)}
    state = {"model.embed_tokens.weight": torch.randn(v, d), "model.norm.weight": torch.ones(d)}
    state |= {f"model.layers.0.{k}.weight": torch.randn(s) * 0.2 for k, s in shapes.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(path, config, state, GGUF_TOKENIZER)
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _ollama_blob(root: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def add_ollama_model(root: Path, manifest_path: str, gguf: Path, *, template: str = "{{ .Prompt }}",
                     adapter: bool = False) -> Path:
    """An `ollama pull` result: blobs named by digest, and a manifest at manifests/HOST/NS/MODEL/TAG."""
    model = _ollama_blob(root, gguf.read_bytes())
    config = _ollama_blob(root, json.dumps({"model_format": "gguf", "model_family": "llama",
                                            "model_type": "0.1M", "file_type": "F32"}).encode())
    layers = [{"mediaType": "application/vnd.ollama.image.model", **model},
              {"mediaType": "application/vnd.ollama.image.template", **_ollama_blob(root, template.encode())},
              {"mediaType": "application/vnd.ollama.image.params", **_ollama_blob(root, b'{"stop": ["</s>"]}')}]
    if adapter:
        layers.append({"mediaType": "application/vnd.ollama.image.adapter", **_ollama_blob(root, b"GGUFlora")})
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
                "layers": layers}
    path = root / "manifests" / manifest_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return root / "blobs" / model["digest"].replace(":", "-")


def add_hf_repo(cache: Path, repo_id: str, files: dict[str, bytes | Path], *, ref: str = "main",
                commit: str = "c" * 40) -> Path:
    """A huggingface_hub download: blobs, snapshots/<commit>/ symlinks to them, refs/<ref>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def stores(tmp_path, monkeypatch, tiny_gguf):
    """One model or more in each store, and the variables that point aigc at them."""
    ollama, cache, lmstudio = tmp_path / "ollama", tmp_path / "hf-cache", tmp_path / "lmstudio"
    blob = add_ollama_model(ollama, "registry.ollama.ai/library/tiny/latest", tiny_gguf)
    add_ollama_model(ollama, "registry.ollama.ai/someone/other/v1", tiny_gguf, template="other")
    add_ollama_model(ollama, "hf.co/org/tiny-GGUF/Q8_0", tiny_gguf)

    config = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                         num_kv_heads=4)
    config.save(tmp_path / "config.json")
    hf_dir = add_hf_repo(cache, "org/tiny-hf", {"config.json": tmp_path / "config.json",
                                                "model.safetensors": b"weights", "tokenizer.json": b"{}"})
    gguf_repo = add_hf_repo(cache, "org/tiny-gguf", {"tiny-Q8_0.gguf": tiny_gguf, "tiny-Q4_K_M.gguf": tiny_gguf,
                                                     "mmproj-tiny-f16.gguf": b"GGUF", "README.md": b"hi"})
    add_hf_repo(cache, "org/config-only", {"config.json": tmp_path / "config.json"})  # AutoConfig leftovers

    (lmstudio / "pub" / "repo").mkdir(parents=True)
    shutil.copy(tiny_gguf, lmstudio / "pub" / "repo" / "tiny-Q4_K_M.gguf")
    (lmstudio / "pub" / "two").mkdir(parents=True)
    for quant in ("Q4_K_M", "Q8_0"):
        shutil.copy(tiny_gguf, lmstudio / "pub" / "two" / f"tiny-{quant}.gguf")

    monkeypatch.setenv("OLLAMA_MODELS", str(ollama))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("LMSTUDIO_MODELS", str(lmstudio))
    monkeypatch.setenv("COLUMNS", "400")  # rich's table width, so that rows are not wrapped
    return {"ollama": ollama, "blob": blob, "cache": cache, "hf_dir": hf_dir, "gguf_repo": gguf_repo,
            "lmstudio": lmstudio}


# ---- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "parsed"), [
    ("qwen2.5", ("registry.ollama.ai", "library", "qwen2.5", "latest")),
    ("qwen2.5:0.5b", ("registry.ollama.ai", "library", "qwen2.5", "0.5b")),
    ("someone/model:v1", ("registry.ollama.ai", "someone", "model", "v1")),
    ("hf.co/org/repo-GGUF:Q4_K_M", ("hf.co", "org", "repo-GGUF", "Q4_K_M")),
    ("localhost:5000/ns/model", ("localhost:5000", "ns", "model", "latest")),
])
def test_ollama_names(spec, parsed):
    assert discovery.parse_ollama_name(spec) == parsed


@pytest.mark.parametrize("spec", ["", "a/b/c/d", "model:", "../x", "a//b"])
def test_bad_ollama_names(spec):
    with pytest.raises(ModelNotFoundError, match="not an Ollama model name"):
        discovery.parse_ollama_name(spec)


@pytest.mark.parametrize(("spec", "ref"), [
    ("org/repo", HubRef("org/repo")),
    ("hf:org/repo@v1.0", HubRef("org/repo", None, "v1.0")),
    ("org/repo/sub/model-Q4_K_M.gguf", HubRef("org/repo", "sub/model-Q4_K_M.gguf")),
    ("org/repo:Q4_K_M", HubRef("org/repo", "Q4_K_M")),
    ("org/repo:model.gguf@abc", HubRef("org/repo", "model.gguf", "abc")),
])
def test_hub_names(spec, ref):
    assert parse_hub_ref(spec) == ref
    assert parse_hub_ref(ref.name) == ref  # the canonical name reads back


@pytest.mark.parametrize("spec", ["repo", "org/repo:", "org/repo/README.md", "org/repo@", "org/repo/a.gguf:Q8_0"])
def test_bad_hub_names(spec):
    with pytest.raises(ModelNotFoundError, match="hub"):
        parse_hub_ref(spec)


def test_quant_names_pick_files_as_ollama_does():
    files = ["m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-IQ4_XS.gguf", "m-Q4_K_M_L.gguf", "m.Q8_0.gguf",
             "big-Q6_K-00001-of-00002.gguf", "mmproj-m-f16.gguf", "sub/m_q5_0.gguf"]
    assert select_ggufs("Q4_K_M", files) == ["m-Q4_K_M.gguf"]
    assert select_ggufs("q8_0", files) == ["m.Q8_0.gguf"]
    assert select_ggufs("Q4_XS", files) == []  # IQ4_XS is another format
    assert select_ggufs("Q5_0", files) == ["sub/m_q5_0.gguf"]
    assert select_ggufs("Q6_K", files) == []  # split models are not loadable
    assert select_ggufs("m.Q8_0.gguf", files) == ["m.Q8_0.gguf"]
    assert "mmproj-m-f16.gguf" not in select_ggufs(None, files)


# ---- listing ---------------------------------------------------------------------------------


def test_models_lists_every_store(stores, tmp_path, capsys):
    assert main(["models", "--models-dir", str(tmp_path / "no-models")]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 3}
    expected = {
        "ollama:tiny:latest": ("ollama", str(stores["blob"])),
        "ollama:someone/other:v1": ("ollama", "sha256-"),
        "ollama:hf.co/org/tiny-GGUF:Q8_0": ("ollama", "sha256-"),
        "hf:org/tiny-hf": ("hf-cache", str(stores["hf_dir"])),
        "hf:org/tiny-gguf/tiny-Q8_0.gguf": ("hf-cache", str(stores["gguf_repo"] / "tiny-Q8_0.gguf")),
        "hf:org/tiny-gguf/tiny-Q4_K_M.gguf": ("hf-cache", "tiny-Q4_K_M.gguf"),
        "lmstudio:pub/repo/tiny-Q4_K_M.gguf": ("lmstudio", "tiny-Q4_K_M.gguf"),
        "lmstudio:pub/two/tiny-Q8_0.gguf": ("lmstudio", "tiny-Q8_0.gguf"),
    }
    for name, (source, path) in expected.items():
        assert name in rows, name
        assert rows[name].split("│")[1].strip() == source and path in rows[name]
    assert "KB" in rows["ollama:tiny:latest"]  # the size column
    assert not any("mmproj" in name or "config-only" in name for name in rows)
    assert "ollama:MODEL[:TAG]" in out  # how to name models


def test_listing_reads_no_gguf_header(stores, monkeypatch):
    import aigc.models.gguf_checkpoint as gguf_checkpoint

    def fail(*args, **kwargs):
        raise AssertionError("listing must not parse GGUF files")

    monkeypatch.setattr(gguf_checkpoint, "read_gguf_metadata", fail)
    assert len(discovery.installed_models()) == 9


def test_missing_stores_list_nothing(tmp_path, monkeypatch):
    for name in ("OLLAMA_MODELS", "HF_HUB_CACHE", "LMSTUDIO_MODELS"):
        monkeypatch.setenv(name, str(tmp_path / "absent"))
    assert discovery.installed_models() == []


# ---- Ollama ----------------------------------------------------------------------------------


def test_ollama_names_resolve_to_the_gguf_blob(stores):
    for name in ("ollama:tiny", "ollama:tiny:latest", "ollama:TINY:latest"):
        m = resolve_model(name)
        assert (m.kind, m.path, m.source, m.name) == ("gguf", stores["blob"], "ollama", "ollama:tiny:latest")
        assert m.description.startswith("llama 0.1M F32")
    assert resolve_model("ollama:someone/other:v1").path.name.startswith("sha256-")
    assert resolve_model("ollama:hf.co/org/tiny-GGUF:Q8_0").name == "ollama:hf.co/org/tiny-GGUF:Q8_0"
    assert discovery.ollama_model("someone/other:v1").template == "other"  # Ollama's own (Go) template


def test_missing_ollama_model_says_which_store(stores):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("ollama:qwen2.5:0.5b")
    message = str(info.value)
    assert "\n" not in message and str(stores["ollama"]) in message
    assert "'qwen2.5:0.5b'" in message and "ollama pull qwen2.5:0.5b" in message
    assert "installed: hf.co/org/tiny-GGUF:Q8_0, someone/other:v1, tiny:latest" in message


def test_ollama_model_with_an_adapter_is_refused(stores, tiny_gguf):
    add_ollama_model(stores["ollama"], "registry.ollama.ai/library/tuned/latest", tiny_gguf, adapter=True)
    with pytest.raises(ModelNotFoundError, match="LoRA adapter"):
        resolve_model("ollama:tuned")


def test_ollama_default_stores(tmp_path, monkeypatch):
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    roots = discovery.ollama_roots()
    assert roots[0] == tmp_path / ".ollama" / "models"
    assert Path("/usr/share/ollama/.ollama/models") in roots


def test_a_blob_path_is_a_gguf_model(stores, tmp_path):
    m = resolve_model(str(stores["blob"]))
    assert (m.kind, m.path, m.name) == ("gguf", stores["blob"], stores["blob"].name)
    (tmp_path / "sha256-0000").write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError, match="not a .gguf model"):
        resolve_model(str(tmp_path / "sha256-0000"))


def test_an_ollama_model_loads_and_generates(stores):
    from aigc.engine.offline import generate
    from aigc.generation.params import SamplingParams
    from aigc.models.loader import load_model

    loaded = load_model("ollama:tiny:latest")
    assert loaded.name == "ollama:tiny:latest" and loaded.path == stores["blob"]
    assert loaded.tokenizer.chat_template  # the GGUF's own chat template, not Ollama's Go template
    params = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
    completion = generate(loaded.model, [loaded.tokenizer.encode("t1 t2")], params, tokenizer=loaded.tokenizer)[0][0]
    assert len(completion.token_ids) == 5


# ---- Hugging Face cache ----------------------------------------------------------------------


def test_hf_names_resolve_in_the_cache(stores):
    m = resolve_model("hf:org/tiny-hf", offline=True)
    assert (m.kind, m.path, m.source) == ("hf_dir", stores["hf_dir"], "hf-cache")
    assert resolve_model("org/tiny-hf", offline=True).path == stores["hf_dir"]  # a bare hub id, as before
    for name in ("hf:org/tiny-gguf/tiny-Q8_0.gguf", "hf:org/tiny-gguf:Q8_0", "hf:org/tiny-gguf:tiny-Q8_0.gguf",
                 "hf:org/tiny-gguf/tiny-Q8_0.gguf@main"):
        g = resolve_model(name, offline=True)
        assert (g.kind, g.path, g.name) == ("gguf", stores["gguf_repo"] / "tiny-Q8_0.gguf", name)


def test_hf_gguf_repo_needs_a_file_when_it_has_several(stores):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("hf:org/tiny-gguf", offline=True)
    message = str(info.value)
    assert "tiny-Q4_K_M.gguf, tiny-Q8_0.gguf" in message and "hf:org/tiny-gguf:QUANT" in message
    with pytest.raises(ModelNotFoundError, match=r"cannot download 'hf:org/tiny-gguf:Q6_K' \(offline mode\)"):
        resolve_model("hf:org/tiny-gguf:Q6_K", offline=True)  # not cached: it would be downloaded


def test_hf_revision_other_than_main_is_named(stores, tiny_gguf):
    add_hf_repo(stores["cache"], "org/pinned", {"m-Q8_0.gguf": tiny_gguf}, ref="v1", commit="d" * 40)
    names = {m.name for m in discovery.hf_cache_models()}
    assert "hf:org/pinned/m-Q8_0.gguf@v1" in names
    assert resolve_model("hf:org/pinned@v1", offline=True).path.name == "m-Q8_0.gguf"  # its only GGUF file


# ---- LM Studio -------------------------------------------------------------------------------


def test_lmstudio_names(stores):
    one = resolve_model("lmstudio:pub/repo")
    assert (one.path, one.source, one.name) == (stores["lmstudio"] / "pub/repo/tiny-Q4_K_M.gguf", "lmstudio",
                                                "lmstudio:pub/repo/tiny-Q4_K_M.gguf")
    assert resolve_model("lmstudio:pub/two/tiny-Q8_0.gguf").path.name == "tiny-Q8_0.gguf"
    with pytest.raises(ModelNotFoundError, match=r"holds 2 GGUF files .*lmstudio:pub/two/FILE\.gguf"):
        resolve_model("lmstudio:pub/two")
    with pytest.raises(ModelNotFoundError, match=f"no LM Studio model 'pub/none' in {stores['lmstudio']}"):
        resolve_model("lmstudio:pub/none")
    with pytest.raises(ModelNotFoundError, match="not an LM Studio model name"):
        resolve_model("lmstudio:pub")


def test_lmstudio_folders_follow_its_home_pointer_and_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("LMSTUDIO_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    home = tmp_path / "elsewhere"
    home.mkdir()
    (tmp_path / ".lmstudio-home-pointer").write_text(f"{home}\n")
    (home / "settings.json").write_text(json.dumps({"downloadsFolder": str(tmp_path / "big-disk")}))
    assert discovery.lmstudio_roots() == [tmp_path / "big-disk", home / "models", tmp_path / ".lmstudio/models",
                                          tmp_path / ".cache/lm-studio/models"]


def test_unknown_name_lists_installed_models_and_how_to_name_one(stores, tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("no-such-model", models_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "ollama:tiny:latest" in message and "hf:org/tiny-hf" in message
    assert "ollama:MODEL[:TAG]" in message and "lmstudio:PUBLISHER/REPO[/FILE.gguf]" in message
