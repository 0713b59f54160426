"""The FastAPI application: routes, error shape, API keys, CORS, request log and metrics.

`create_app(settings)` registers the configured models (loaded in a background thread once the
server starts, so `/health` answers 503 meanwhile) and remotes; tests and embedders pass their own
`ModelBackends` instead. Other route modules (the web app's) are added with `app.include_router`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from aigc.knowledge.embedder import E5_NAME, default_embedder
from aigc.safety.events import ModerationLog
from aigc.server import (
    classify_routes,
    dashboard_routes,
    embeddings_routes,
    eval_routes,
    moderation_routes,
    openai_routes,
    responses_routes,
)
from aigc.server.app_http import BodyLimitMiddleware, SecurityHeadersMiddleware
from aigc.server.app_routes import install_app
from aigc.server.auth import AccessGate, AuthMiddleware
from aigc.server.backends import ClassifierBackend, ModelBackends
from aigc.server.embedding_backend import EmbeddingBackend, KnowledgeEmbeddingBackend
from aigc.server.errors import APIError, install_error_handlers
from aigc.server.history import MetricsHistory
from aigc.server.local_backend import LocalBackend
from aigc.server.metrics import ServerMetrics
from aigc.server.moderation_guard import ModerationGuard, ModerationPolicy
from aigc.server.remote import RemoteBackend, parse_remote_spec, resolve_remote
from aigc.server.request_log import RequestLogMiddleware
from aigc.server.text_check import TextCheckMiddleware
from aigc.server.widget_routes import OutsideWidget, WidgetAccessMiddleware
from aigc.settings import Settings

log = logging.getLogger("aigc.server")


def load_local_backend(name: str, settings: Settings) -> LocalBackend | ClassifierBackend | EmbeddingBackend:
    """Load a model and start its engine (slow: run off the event loop)."""
    # Imported here: the model and engine bring torch; the server's own modules do not need it.
    from aigc.engine.engine import Engine
    from aigc.models.classifier import is_classifier_dir
    from aigc.models.loader import load_model
    from aigc.models.registry import resolve_model
    from aigc.models.sentence_encoder import SentenceEncoder, is_encoder_dir

    if not (Path(name) / "adapter_config.json").is_file():
        resolved = resolve_model(name, models_dir=settings.models_dir)
        if resolved.kind == "hf_dir" and is_classifier_dir(resolved.path):
            from aigc.apps.classify import Classifier

            classifier = Classifier.load(resolved.path, dtype=settings.dtype)
            classifier.name = name
            return ClassifierBackend(name, classifier)
        if resolved.kind == "hf_dir" and is_encoder_dir(resolved.path):
            return EmbeddingBackend(name, SentenceEncoder.load(resolved.path))
    loaded = load_model(name, models_dir=settings.models_dir, dtype=settings.dtype, quantize=settings.quantize)
    engine = Engine(loaded.model, loaded.tokenizer, name, max_concurrency=settings.max_concurrency,
                    max_queue=settings.max_queue, max_context=settings.max_context)
    engine.start()
    return LocalBackend(name, engine, loaded.tokenizer, max_context=engine.max_context,
                        reasoning_parser=settings.reasoning_parser)


def backends_from_settings(settings: Settings, environ: Mapping[str, str]) -> ModelBackends:
    """Local models from `settings.models` (to load at startup) and remotes from `settings.remotes`
    (their `key=ENV_VAR` looked up in `environ`). Raises ValueError for a bad remote spec."""
    backends = ModelBackends()
    for name in settings.models:
        backends.add_loader(name, functools.partial(load_local_backend, name, settings))
    if settings.models and settings.serve_kb_embedder and E5_NAME not in settings.models:
        # The knowledge bases' embedding model, on /v1/embeddings too (loaded with the others).
        backends.add_loader(E5_NAME, lambda: KnowledgeEmbeddingBackend(E5_NAME, default_embedder()))
    for spec in settings.remotes:
        remote = parse_remote_spec(spec, environ)
        if "remote" in settings.redact_pii:
            remote = replace(remote, redact_pii=True)
        if remote.model is None:  # which model(s) the upstream serves: asked at start-up
            backends.add_loader(remote.name, functools.partial(resolve_remote, remote))
        else:
            backends.add(RemoteBackend(remote))
    return backends


def create_app(settings: Settings, backends: ModelBackends | None = None, *,
               environ: Mapping[str, str] | None = None) -> FastAPI:
    if backends is None:
        backends = backends_from_settings(settings, environ or {})
    # The dashboard's history lives in the app database (opened on the first write).
    history = MetricsHistory(lambda: web.db, backends.stats, settings.metrics_history_days)
    metrics = ServerMetrics(backends.stats, history)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backends.start_loading()
        if app.state.gate.database_exists():  # documents a previous run left half-indexed
            await run_in_threadpool(app.state.webapp.indexer.resume)
        recording = asyncio.create_task(history.run())
        yield
        recording.cancel()
        await asyncio.gather(recording, return_exceptions=True)
        await run_in_threadpool(history.flush)  # the slices being filled
        for b in backends.all():
            aclose = getattr(b, "aclose", None)  # remotes: their HTTP clients live in this loop
            if aclose is not None:
                await aclose()
        backends.close()

    # No /docs or /redoc: they load their scripts from a CDN. The schema stays at /openapi.json,
    # behind the same keys or login as the API.
    app = FastAPI(title="aigc", summary="OpenAI-compatible API for aigc models", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.backends = backends
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(classify_routes.router)
    app.include_router(embeddings_routes.router)
    app.include_router(responses_routes.router)
    app.include_router(moderation_routes.router)
    app.include_router(dashboard_routes.router)
    app.include_router(eval_routes.router)
    web = install_app(app, settings, backends)  # the web app: /api, /, /static (app_routes.py)
    gate = app.state.gate = AccessGate(settings, lambda: web.db)
    policy = ModerationPolicy.load(settings.moderation, settings.moderation_config)
    if policy.mode != "off":
        backends.guard = ModerationGuard(policy, lambda: moderation_routes.moderator_of(app), metrics,
                                         lambda event: ModerationLog(web.db).add(event))
    app.state.moderation_policy = policy

    @app.get("/health", response_model=None)
    async def health() -> Response:
        if backends.loading:
            raise APIError(503, f"Loading models: {', '.join(backends.loading)}.", code="loading",
                           headers={"Retry-After": "5"})
        if backends.failed:
            failed = "; ".join(f"{k}: {v}" for k, v in backends.failed.items())
            raise APIError(503, f"Models failed to load: {failed}", code="model_load_failed")
        return JSONResponse({"status": "ok", "models": backends.names()})

    @app.get("/metrics", response_model=None)
    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # Last added runs first: CORS (answers preflights) -> request log (sees every status) -> auth
    # (host, who, limits) -> body size (413) -> text check (lone surrogates are a 400).
    app.add_middleware(WidgetAccessMiddleware, database=lambda: web.db)  # per-site CORS of /widget/v1
    app.add_middleware(TextCheckMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(AuthMiddleware, gate=gate)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestLogMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(OutsideWidget, inner=CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["x-request-id", "retry-after"])
    return app
