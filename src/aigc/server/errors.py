"""Every error leaves the server in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Clients (the official `openai` package included) pick their exception class from the HTTP status
and read `message`/`param`/`code` from this body, so each failure gets the status a client can act
on: 400 bad input, 401 key, 404 model or route, 429 busy (with `Retry-After`), 503 loading.
Nothing a client can send should end in a 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aigc.engine.protocol import EngineError, QueueFullError

log = logging.getLogger("aigc.server")

# OpenAI's `type` for each status class.
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    """An error answered to the client as is: status, message and the OpenAI fields."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status_code, "server_error" if status_code >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def model_not_found(model: str, available: list[str]) -> APIError:
    names = ", ".join(available) or "none"
    return APIError(404, f"The model `{model}` does not exist. Available models: {names}.",
                    param="model", code="model_not_found")


def from_engine_error(e: EngineError) -> APIError:
    """Map the engine's errors (each carries its HTTP status) to an APIError."""
    status = getattr(e, "status_code", 500)
    if isinstance(e, QueueFullError):
        retry = max(1, round(e.retry_after))
        return APIError(429, str(e) or "The server is busy; retry later.", code="rate_limit_exceeded",
                        headers={"Retry-After": str(retry)})
    if status == 503:
        return APIError(503, str(e) or "The model is not ready.", code="model_not_ready", headers={"Retry-After": "1"})
    return APIError(status, str(e) or type(e).__name__, param=getattr(e, "param", None),
                    code=getattr(e, "code", None))


def from_validation_errors(errors: list[dict[str, Any]]) -> APIError:
    """Pydantic/FastAPI validation errors -> one 400 naming the first offending parameter."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # The top-level field is the parameter; deeper parts (list indices, union branches) go to the text.
    param = loc[0] if loc else None
    msg = str(first.get("msg", "invalid value"))
    if len(loc) > 1 and first.get("type") != "missing":
        msg = f"{msg} (at {'.'.join(loc)})"
    if first.get("type") == "json_invalid":
        return bad_request(f"The request body is not valid JSON: {first.get('ctx', {}).get('error', msg)}",
                           code="invalid_json")
    if first.get("type") == "missing":
        return bad_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    text = f"Invalid value for '{param}': {msg}" if param else f"Invalid request: {msg}"
    return bad_request(text, param=param, code="invalid_value")


def error_sse(error: APIError) -> str:
    """An error after a stream started: one SSE event in the error shape (the openai client raises it)."""
    return f"data: {json.dumps(error.body())}\n\n"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(EngineError)
    async def _engine_error(request: Request, exc: EngineError) -> JSONResponse:
        return from_engine_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI answers 400 (not FastAPI's 422) for bad parameters.
        return from_validation_errors(list(exc.errors())).response()

    @app.exception_handler(ValidationError)
    async def _pydantic(request: Request, exc: ValidationError) -> JSONResponse:
        return from_validation_errors(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Unknown route: {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return APIError(exc.status_code, message, headers=dict(exc.headers or {})).response()

    @app.exception_handler(RecursionError)
    async def _deep(request: Request, exc: RecursionError) -> JSONResponse:
        # json.loads of 100,000 nested brackets, or a structure as deep walked by a route
        return bad_request("The request is nested too deeply.", code="nesting_too_deep").response()

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> JSONResponse:
        # A row changed by this request was deleted by another one meanwhile.
        return APIError(404, "It was deleted while this request changed it.", code="not_found").response()

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests raced on one row (a parent deleted meanwhile, a unique value taken): one wins.
        log.info("integrity conflict on %s %s: %s", request.method, request.url.path, exc.orig)
        return APIError(409, "Another request changed the same data at the same time; retry.",
                        code="conflict").response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return APIError(500, "Internal server error.", code="internal_error").response()
