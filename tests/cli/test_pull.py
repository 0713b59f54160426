"""`aigc pull`: one line and exit code 2 at once when it cannot download; the name to use when it did.
No network: the download itself is huggingface_hub's, stood in for by a fake that fills the cache."""

from __future__ import annotations

import time

import pytest

import aigc.models.registry as registry
from aigc.cli.main import main
from aigc.models.registry import resolve_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def run_pull(capsys, *args: str) -> tuple[int, str, str]:
    start = time.monotonic()
    code = main(["pull", *args])
    assert time.monotonic() - start < 10  # fails fast: no retries, no waiting on a dead network
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_fails_at_once(cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_pull(capsys, "Qwen/Qwen2.5-0.5B-Instruct")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "(offline mode)" in err
    assert err.startswith("aigc pull: error: cannot download 'hf:Qwen/Qwen2.5-0.5B-Instruct'")


def test_unreachable_hub_fails_at_once(cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    code, _, err = run_pull(capsys, "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "--file", "Q4_K_M")
    assert code == 2 and err.count("\n") == 1
    assert "cannot download 'hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M' (no network access" in err


@pytest.mark.parametrize(("args", "message"), [
    (["not-a-hub-id"], "is not a hub model name"),
    (["org/repo/weights.bin"], "only a .gguf file"),
    (["org/repo:Q8_0", "--file", "Q4_K_M"], "already names a file or revision"),
])
def test_bad_names_are_one_line(cache, capsys, args, message):
    code, _, err = run_pull(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and message in err


@pytest.fixture
def fake_hub(cache, monkeypatch):
    """A reachable hub whose GGUF repo org/tiny-GGUF has two quants; downloads land in the cache as
    huggingface_hub lays them out (blob, snapshot symlink, refs/main)."""
    import huggingface_hub

    commit = "e" * 40
    files = ["README.md", "tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"]
    downloads = []

    def list_repo_files(self, repo_id, revision=None, **kwargs):
        if repo_id != "org/tiny-GGUF":
            import httpx2  # huggingface_hub's HTTP client

            response = httpx2.Response(404, request=httpx2.Request("GET", f"http://hub.test/api/models/{repo_id}"))
            raise huggingface_hub.errors.RepositoryNotFoundError("404 Repository Not Found", response=response)
        return files

    def hf_hub_download(repo_id, filename, *, revision=None, cache_dir=None, endpoint=None, **kwargs):
        assert str(cache_dir) == str(cache) and endpoint == "http://hub.test"
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        (repo / "blobs" / "b1").write_bytes(b"GGUF" + filename.encode())
        (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / commit / filename).symlink_to("../../blobs/b1")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / (revision or "main")).write_text(commit)
        downloads.append((repo_id, filename, revision))
        return str(repo / "snapshots" / commit / filename)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.test")
    monkeypatch.setattr(registry, "_hub_reachable", lambda endpoint: True)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return downloads


def test_pull_a_quant_then_name_it(fake_hub, cache, capsys):
    code, out, _ = run_pull(capsys, "org/tiny-GGUF", "--file", "Q8_0")
    assert code == 0 and fake_hub == [("org/tiny-GGUF", "tiny-Q8_0.gguf", None)]
    assert "pulled hf:org/tiny-GGUF/tiny-Q8_0.gguf (gguf)" in out
    assert "aigc chat -m hf:org/tiny-GGUF/tiny-Q8_0.gguf" in out
    for name in ("hf:org/tiny-GGUF/tiny-Q8_0.gguf", "hf:org/tiny-GGUF", "org/tiny-GGUF"):  # now offline
        m = resolve_model(name, offline=True)
        assert (m.kind, m.path.name, m.source) == ("gguf", "tiny-Q8_0.gguf", "hf-cache")


def test_pull_a_gguf_repo_without_a_file_lists_its_files(fake_hub, capsys):
    code, _, err = run_pull(capsys, "hf:org/tiny-GGUF:tiny-Q4_K_M.gguf@v2")
    assert code == 0 and fake_hub == [("org/tiny-GGUF", "tiny-Q4_K_M.gguf", "v2")]
    fake_hub.clear()
    code, _, err = run_pull(capsys, "org/tiny-GGUF:IQ4_XS")
    assert code == 2 and "no GGUF file matching 'IQ4_XS'; it has: tiny-Q4_K_M.gguf, tiny-Q8_0.gguf" in err
    code, _, err = run_pull(capsys, "org/missing", "--file", "Q8_0")
    assert code == 2 and err.count("\n") == 1 and "(RepositoryNotFoundError)" in err
    assert fake_hub == []
