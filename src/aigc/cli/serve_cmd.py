"""`aigc serve`: the OpenAI-compatible API server (and the web app once it exists)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from aigc.cli.common import add_weight_args
from aigc.server.reasoning import REASONING_PARSERS


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API")
    p.add_argument("--model", "-m", action="append", default=None,
                   help="model to serve, named as `aigc models` lists them (a path, hf:…, ollama:…, lmstudio:…; "
                        "repeatable; default: the bundled smollm2-135m-instruct plus every model in --models-dir, "
                        "e.g. aigc-poet-zh)")
    p.add_argument("--models-dir", type=Path, default=None)
    add_weight_args(p)
    p.add_argument("--host", default=None, help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: 8000)")
    p.add_argument("--api-key", action="append", default=None, help="accepted API key (repeatable)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback bind with no account (aigc users add) and no --api-key")
    p.add_argument("--allowed-host", action="append", default=None, metavar="HOST",
                   help="Host name this server answers to (repeatable; '*' for any). Default: loopback "
                        "names on a loopback bind, any otherwise")
    p.add_argument("--rate-limit", default=None, metavar="N/UNIT",
                   help="requests per user and per API key, e.g. 60/minute (users can be given their own: "
                        "aigc users set-limits)")
    p.add_argument("--token-quota", default=None, metavar="N/UNIT",
                   help="tokens (prompt + completion) per user, e.g. 200000/day")
    p.add_argument("--max-concurrency", type=int, default=None, help="sequences decoded together")
    p.add_argument("--max-queue", type=int, default=None, help="waiting requests before HTTP 429")
    p.add_argument("--max-context", type=int, default=None, help="tokens per sequence slot")
    p.add_argument("--reasoning-parser", default=None, choices=REASONING_PARSERS,
                   help="split a local model's <think>...</think> block off its chat answers into "
                        "reasoning_content: auto (default) for models whose chat template or vocabulary has "
                        "<think>, think for every model, none to leave the text as it is")
    p.add_argument("--remote", action="append", default=None, metavar="NAME=URL[,key=ENV_VAR][,model=ID]",
                   help="register an OpenAI-compatible endpoint as model NAME (repeatable). key=ENV_VAR: its API "
                        "key's environment variable; model=ID: the upstream's model to ask for. Without model= "
                        "the upstream's /v1/models is asked at start-up: one model is served as NAME; several as "
                        "NAME/<id> each and NAME for the first")
    p.add_argument("--cors-origin", action="append", default=None, help="allowed CORS origin (repeatable)")
    p.add_argument("--moderation", default=None, choices=["off", "log", "warn", "block"],
                   help="moderate inputs and outputs (also while streaming) with the local moderation model: log "
                        "records flagged text, warn also marks the answer, block refuses flagged inputs and cuts "
                        "flagged output (finish_reason content_filter). Default: the config file's mode, else off")
    p.add_argument("--moderation-config", type=Path, default=None, metavar="FILE",
                   help="YAML/JSON moderation settings: thresholds (per category), window_tokens, check_input, "
                        "check_output, store_text (keep flagged text in the moderation log), mode")
    p.add_argument("--moderation-model", type=Path, default=None, metavar="DIR",
                   help="a moderation model trained by `aigc train moderation` (default: the bundled one)")
    p.add_argument("--redact-pii", default=None, metavar="WHERE",
                   help="replace personal data (e-mail, phone, ID and card numbers, IPs, names, addresses) with "
                        "placeholders in: logs, store (conversations saved redacted), remote (before a request "
                        "leaves for a --remote backend; the reply's placeholders are restored). Comma-separated, "
                        "or none (default: logs)")
    p.add_argument("--database-url", default=None,
                   help="web app database (default sqlite:///aigc.db; postgresql+psycopg://... works too)")
    p.set_defaults(func=run)


def default_models(settings) -> list[str]:
    """The bundled model first (the default for clients that name none), then our local models."""
    from aigc.models.registry import list_models

    names = list(settings.models)
    names += [m.name for m in list_models(settings.models_dir) if m.name not in names]
    return names


def run(args: argparse.Namespace) -> int:
    from aigc.safety.policy import parse_redaction
    from aigc.server.launch import serve
    from aigc.settings import Settings

    fields = {
        "models": args.model, "models_dir": args.models_dir, "dtype": args.dtype,
        "quantize": args.quantize, "host": args.host,
        "port": args.port, "api_keys": args.api_key, "max_concurrency": args.max_concurrency,
        "max_queue": args.max_queue, "max_context": args.max_context, "remotes": args.remote,
        "reasoning_parser": args.reasoning_parser,
        "cors_origins": args.cors_origin, "database_url": args.database_url,
        "allowed_hosts": args.allowed_host, "rate_limit": args.rate_limit, "token_quota": args.token_quota,
        "redact_pii": None if args.redact_pii is None else parse_redaction(args.redact_pii),
        "moderation": args.moderation, "moderation_config": args.moderation_config,
        "moderation_model": args.moderation_model,
    }
    overrides = {k: v for k, v in fields.items() if v is not None}
    if args.insecure:
        overrides["insecure"] = True
    settings = Settings(**overrides)
    if args.model:  # a model named on the command line that cannot load stops the start (exit 2)
        from aigc.models.loader import check_model

        for name in settings.models:
            check_model(name, models_dir=settings.models_dir)
    if args.remote and not args.model:
        settings.models = []  # only remote models were asked for
    elif not args.model and "models" not in settings.model_fields_set:
        settings.models = default_models(settings)
    # The edge reads the environment: remotes name the variables that hold their API keys.
    serve(settings, environ=dict(os.environ))
    return 0
