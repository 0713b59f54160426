"""Models other programs already downloaded: the Hugging Face cache, Ollama's store, LM Studio's folder.

`installed_models()` lists them for `aigc models`, cheaply (directory walks and small JSON files; no GGUF
header is read), and each one carries the name `resolve_model` takes for it:

    hf:ORG/REPO[@REV]                   a transformers model directory in the HF cache
    hf:ORG/REPO/FILE.gguf[@REV]         one GGUF file of a GGUF repo (hf:ORG/REPO:Q4_K_M picks by quant)
    ollama:MODEL[:TAG]                  registry.ollama.ai/library/MODEL, TAG defaults to latest;
    ollama:NAMESPACE/MODEL[:TAG]        also ollama:HOST/NAMESPACE/MODEL[:TAG] (hf.co/ORG/REPO:Q4_K_M, ...)
    lmstudio:PUBLISHER/REPO/FILE.gguf   or lmstudio:PUBLISHER/REPO when the folder holds one model file

The stores are where those programs put them, read at call time:
- the HF cache: HF_HUB_CACHE or HF_HOME/hub, default ~/.cache/huggingface/hub (`registry.hf_cache_dir`);
- Ollama: OLLAMA_MODELS, else ~/.ollama/models and the Linux service's /usr/share/ollama/.ollama/models;
- LM Studio reads no variable: its home is named by ~/.lmstudio-home-pointer (default ~/.lmstudio), its
  models live in <home>/models unless its settings.json moves them (`downloadsFolder`), and versions
  before 0.3 used ~/.cache/lm-studio/models. LMSTUDIO_MODELS (ours: LM Studio has none) names the
  folder instead, several separated by os.pathsep.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc.models.registry import (
    HubRef,
    ModelNotFoundError,
    ResolvedModel,
    hf_cache_dir,
    hub_dir_model,
    hub_gguf_model,
    is_model_gguf,
    select_ggufs,
)

OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_NAMESPACE = "library"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_TEMPLATE_LAYER = "application/vnd.ollama.image.template"
OLLAMA_ADAPTER_LAYER = "application/vnd.ollama.image.adapter"
OLLAMA_FORMS = "ollama:MODEL[:TAG], ollama:NAMESPACE/MODEL[:TAG] or ollama:HOST/NAMESPACE/MODEL[:TAG]"


def installed_models() -> list[ResolvedModel]:
    """The models in the HF cache, Ollama's store and LM Studio's folder, in that order."""
    return [*hf_cache_models(), *(m.resolved() for m in ollama_store()), *lmstudio_models()]


def _unique_dirs(paths: Iterable[Path | None]) -> list[Path]:
    """Each folder once (one store can be reached by two routes, e.g. a symlinked home)."""
    seen: set[str] = set()
    unique = []
    for path in paths:
        if path is not None and (key := os.path.realpath(path)) not in seen:
            seen.add(key)
            unique.append(path)
    return unique


# ---- Hugging Face cache ----------------------------------------------------------------------


def hf_cache_models() -> list[ResolvedModel]:
    """Each cached model repo's named revisions (main, or a branch or tag it was downloaded at; a repo
    downloaded only by commit hash: those commits): the snapshot as a transformers directory when it
    holds config.json and safetensors weights, and each whole-model GGUF file in it."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:  # huggingface_hub's own scan: it knows the cache layout and skips corrupted repos
        cache = scan_cache_dir(hf_cache_dir())
    except (CacheNotFound, ValueError, OSError):  # no cache yet, or not a folder
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        named = [(rev, None if "main" in rev.refs else sorted(rev.refs)[0]) for rev in repo.revisions if rev.refs]
        for revision, ref_name in named or [(rev, rev.commit_hash) for rev in repo.revisions]:
            files = [f.file_path.relative_to(revision.snapshot_path).as_posix() for f in revision.files]
            if "config.json" in files and any(f.endswith(".safetensors") for f in files):
                found.append(hub_dir_model(revision.snapshot_path, None, HubRef(repo.repo_id, None, ref_name)))
            for file in select_ggufs(None, files):
                found.append(hub_gguf_model(revision.snapshot_path / file, None, HubRef(repo.repo_id, file, ref_name)))
    return sorted(found, key=lambda m: m.name.lower())


# ---- Ollama ----------------------------------------------------------------------------------


def ollama_roots() -> list[Path]:
    """Where Ollama keeps models: OLLAMA_MODELS (Ollama then looks nowhere else), else the user's
    folder and the one the Linux install script's `ollama` service user has."""
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    return _unique_dirs([Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")])


@dataclass(frozen=True)
class OllamaModel:
    """One tag in Ollama's store (an OCI-like manifest): the GGUF blob with the weights and the rest."""

    name: str  # as `ollama list` shows it: qwen2.5:0.5b, namespace/model:tag, host/namespace/model:tag
    manifest: Path
    weights: Path  # blobs/sha256-<hex>: a GGUF file without the suffix
    config: dict[str, Any]  # the config blob: model_family, model_type ("494.03M"), file_type ("Q4_K_M")
    template_blob: Path | None
    adapters: int  # LoRA adapter layers (a model made with ADAPTER), which aigc does not apply

    @property
    def template(self) -> str | None:
        """Ollama's prompt template. It is a Go text/template, not jinja: aigc formats chats with the
        GGUF's own `tokenizer.chat_template` instead, which Ollama-published GGUFs carry."""
        if self.template_blob is None:
            return None
        return self.template_blob.read_text(encoding="utf-8", errors="replace")

    @property
    def description(self) -> str:
        what = " ".join(str(self.config[k]) for k in ("model_family", "model_type", "file_type") if self.config.get(k))
        note = f"; its {self.adapters} LoRA adapter layer(s) cannot be applied" if self.adapters else ""
        return f"{what or 'GGUF'} (Ollama){note}"

    def resolved(self) -> ResolvedModel:
        return ResolvedModel(f"ollama:{self.name}", "gguf", self.weights, self.description, "ollama")


def parse_ollama_name(spec: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag): the manifest's path under `manifests/`."""
    path, colon, tag = spec.rpartition(":")
    if not colon or "/" in tag:  # no tag (a colon before the last slash is a host's port)
        path, tag = spec, "latest"
    parts = path.split("/")
    if not tag or len(parts) > 3 or any(p in ("", ".", "..") for p in [*parts, tag]):
        raise ModelNotFoundError(f"{spec!r} is not an Ollama model name: {OLLAMA_FORMS}")
    host, namespace, model = [OLLAMA_REGISTRY, OLLAMA_NAMESPACE][: 3 - len(parts)] + parts
    return host, namespace, model, tag


def _ollama_display(host: str, namespace: str, model: str, tag: str) -> str:
    if host != OLLAMA_REGISTRY:
        return f"{host}/{namespace}/{model}:{tag}"
    return f"{model}:{tag}" if namespace == OLLAMA_NAMESPACE else f"{namespace}/{model}:{tag}"


def ollama_store() -> list[OllamaModel]:
    """Every tag in the Ollama stores that has GGUF weights."""
    found = []
    for root in ollama_roots():
        try:  # manifests/<host>/<namespace>/<model>/<tag>
            manifests = sorted(p for p in (root / "manifests").glob("*/*/*/*") if p.is_file())
        except OSError:  # e.g. the service user's store, unreadable to others
            continue
        found += sorted((m for m in (_read_manifest(root, p) for p in manifests) if m is not None),
                        key=lambda m: m.name.lower())
    return found


def ollama_model(spec: str) -> OllamaModel:
    """The Ollama model `spec` names (as after `ollama:`); `ModelNotFoundError` says where it looked."""
    host, namespace, model, tag = parse_ollama_name(spec)
    display = _ollama_display(host, namespace, model, tag)
    roots = ollama_roots()
    for root in roots:
        found = _read_manifest(root, root / "manifests" / host / namespace / model / tag)
        if found is not None:
            return found
    installed = ollama_store()
    for candidate in installed:  # Ollama matches names without regard to case
        if candidate.name.lower() == display.lower():
            return candidate
    where = ", ".join(str(r) for r in roots)
    have = f"; installed: {', '.join(m.name for m in installed)}" if installed else ""
    raise ModelNotFoundError(f"no Ollama model {display!r} in {where} (fetch it with `ollama pull {display}`, "
                             f"or set OLLAMA_MODELS to Ollama's models folder){have}")


def resolve_ollama(spec: str) -> ResolvedModel:
    found = ollama_model(spec)
    if found.adapters:
        raise ModelNotFoundError(f"Ollama model {found.name!r} applies a LoRA adapter layer, which aigc does "
                                 "not load; use its base model")
    return found.resolved()


def _read_manifest(root: Path, path: Path) -> OllamaModel | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        layers = [layer for layer in manifest.get("layers", []) if isinstance(layer, dict)]
    except (OSError, ValueError, AttributeError):  # missing, unreadable, or not a manifest
        return None
    by_type: dict[str, list[dict]] = {}
    for layer in layers:
        by_type.setdefault(str(layer.get("mediaType")), []).append(layer)
    # No model layer: not something aigc runs (a safetensors-only import of Ollama's newer engine).
    weights = _blob(root, (by_type.get(OLLAMA_MODEL_LAYER) or [{}])[0].get("digest"))
    if weights is None:
        return None
    config: dict[str, Any] = {}
    config_blob = _blob(root, (manifest.get("config") or {}).get("digest"))
    if config_blob is not None:
        try:
            config = json.loads(config_blob.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    template = _blob(root, (by_type.get(OLLAMA_TEMPLATE_LAYER) or [{}])[0].get("digest"))
    parts = path.relative_to(root / "manifests").parts
    return OllamaModel(_ollama_display(*parts), path, weights, config if isinstance(config, dict) else {},
                       template, len(by_type.get(OLLAMA_ADAPTER_LAYER, [])))


def _blob(root: Path, digest: Any) -> Path | None:
    if not isinstance(digest, str) or "/" in digest:
        return None
    # "sha256:<hex>" is stored as sha256-<hex> (the colon is not allowed in Windows file names);
    # the oldest stores kept the colon.
    for name in (digest.replace(":", "-"), digest):
        if os.path.isfile(root / "blobs" / name):  # False, not an error, where it may not be read
            return root / "blobs" / name
    return None


# ---- LM Studio -------------------------------------------------------------------------------


def lmstudio_roots() -> list[Path]:
    """LM Studio's models folders, as the module docstring tells."""
    if os.environ.get("LMSTUDIO_MODELS"):
        return [Path(p).expanduser() for p in os.environ["LMSTUDIO_MODELS"].split(os.pathsep) if p]
    home = Path.home()
    lm_home = home / ".lmstudio"
    try:  # the app, its `lms` CLI and its daemon all read this pointer to find their home
        pointed = Path(home.joinpath(".lmstudio-home-pointer").read_text(encoding="utf-8").strip())
        if pointed.is_dir():
            lm_home = pointed
    except (OSError, ValueError):
        pass
    legacy = home / ".cache" / "lm-studio"
    return _unique_dirs([_downloads_folder(lm_home / "settings.json"), lm_home / "models",
                         home / ".lmstudio" / "models", _downloads_folder(legacy / "settings.json"),
                         legacy / "models"])


def _downloads_folder(settings: Path) -> Path | None:
    """The models folder a user picked in LM Studio (settings.json's `downloadsFolder`)."""
    try:
        folder = json.loads(settings.read_text(encoding="utf-8")).get("downloadsFolder")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(folder).expanduser() if isinstance(folder, str) and folder else None


def lmstudio_models() -> list[ResolvedModel]:
    """Every whole-model GGUF file in LM Studio's folders (laid out PUBLISHER/REPO/FILE.gguf)."""
    found = []
    for root in lmstudio_roots():
        try:
            files = sorted(p for p in root.glob("*/*/*.gguf") if p.is_file() and is_model_gguf(p.name))
        except OSError:
            continue
        found += [_lmstudio_model(root, f) for f in files]
    return found


def resolve_lmstudio(spec: str) -> ResolvedModel:
    """The LM Studio model `spec` names (as after `lmstudio:`): PUBLISHER/REPO[/FILE.gguf]."""
    parts = spec.split("/")
    if len(parts) not in (2, 3) or any(p in ("", ".", "..") for p in parts) or (
            len(parts) == 3 and not parts[2].lower().endswith(".gguf")):
        raise ModelNotFoundError(f"{spec!r} is not an LM Studio model name: lmstudio:PUBLISHER/REPO[/FILE.gguf]")
    roots = lmstudio_roots()
    for root in roots:
        if len(parts) == 3:
            if root.joinpath(*parts).is_file():
                return _lmstudio_model(root, root.joinpath(*parts))
            continue
        folder = root / parts[0] / parts[1]
        files = select_ggufs(None, (p.name for p in folder.glob("*.gguf"))) if folder.is_dir() else []
        if len(files) == 1:
            return _lmstudio_model(root, folder / files[0])
        if files:
            raise ModelNotFoundError(f"'lmstudio:{spec}' holds {len(files)} GGUF files ({', '.join(files)}); "
                                     f"name one: lmstudio:{spec}/FILE.gguf")
    where = ", ".join(str(r) for r in roots)
    raise ModelNotFoundError(f"no LM Studio model {spec!r} in {where} (set LMSTUDIO_MODELS to LM Studio's "
                             "models folder)")


def _lmstudio_model(root: Path, file: Path) -> ResolvedModel:
    publisher, repo = file.relative_to(root).parts[:2]
    return ResolvedModel(f"lmstudio:{publisher}/{repo}/{file.name}", "gguf", file,
                         f"GGUF file of {publisher}/{repo} (LM Studio)", "lmstudio")
