"""One settings object, created at the edge (CLI / server start) and passed down.

Values come from command-line flags, then `AIGC_*` environment variables, then these defaults.
No other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_models_dir() -> Path:
    # The repository's models/ folder (bundled models we trained), found relative to the source tree.
    return Path(__file__).resolve().parents[2] / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIGC_", extra="ignore")

    models: list[str] = Field(default_factory=lambda: ["smollm2-135m-instruct"])
    models_dir: Path = Field(default_factory=_default_models_dir)
    dtype: str = "float32"  # float32 | bfloat16 | float16: float weights that are not quantized
    # Weights as kernels read them: auto keeps a GGUF file's blocks as stored and quantizes HF checkpoints
    # to q8_0 where the native kernels run; none = float weights in `dtype`; or a format (q4_k, ...).
    quantize: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = Field(default_factory=list)  # server-wide keys (an empty one is refused at start)
    insecure: bool = False
    cors_origins: list[str] = Field(default_factory=list)
    # Host names served (DNS-rebinding defence); default: loopback names on a loopback bind, else any.
    allowed_hosts: list[str] = Field(default_factory=list)
    rate_limit: str | None = None  # requests per user and per key, e.g. "60/minute"
    token_quota: str | None = None  # tokens per user and per key, e.g. "200000/day"
    max_concurrency: int = 16  # sequences decoded together (KV-cache slots)
    max_queue: int = 64  # requests waiting for a slot before 429
    max_context: int = 4096  # tokens per KV slot (capped by the model's window)
    # Chat output split into reasoning_content and content (server/reasoning.py): auto = models whose
    # template or vocabulary knows <think>; think = every local model; none = never.
    reasoning_parser: Literal["auto", "none", "think"] = "auto"
    remotes: list[str] = Field(default_factory=list)  # NAME=URL[,key=ENV_VAR]
    database_url: str = "sqlite:///aigc.db"
    response_store_days: float = 30.0  # how long /v1/responses results stay retrievable (previous_response_id)
    metrics_history_days: float = 30.0  # the dashboard's history (server/history.py); 0: none kept
    # Studio: preferred model per template id (e.g. {"poem": "aigc-poet-zh"}); used when served.
    studio_models: dict[str, str] = Field(default_factory=dict)
    log_level: str = "info"
    # Where personal data is replaced by placeholders: logs (default), store (conversations are
    # saved redacted), remote (requests to --remote backends; the reply's placeholders restored).
    redact_pii: list[str] = Field(default_factory=lambda: ["logs"])
    serve_kb_embedder: bool = True  # multilingual-e5-small (the knowledge bases' embedder) on /v1/embeddings
    moderation_model: Path | None = None  # default: the bundled models/aigc-moderation
    moderation: str | None = None  # off | log | warn | block (default: the config file's, else off)
    moderation_config: Path | None = None  # YAML/JSON: thresholds, window_tokens, check_input/output, store_text
