"""Accounts in the web app: log in and out, who am I, my API keys, my usage.

    POST   /api/auth/login    {username, password} -> the user; sets the session cookie
    POST   /api/auth/logout   ends the session
    GET    /api/auth/me       {user, login_required, mode}; 401 when a login is needed
    GET    /api/keys          my keys (an admin: ?all=1 for everyone's)
    POST   /api/keys          {name} -> {key, ...}: the key is shown this once
    DELETE /api/keys/{id}     revoke (mine; an admin: any)
    GET    /api/usage         my requests and tokens per day and key (an admin: ?all=1)

Failed logins are limited per account (5 per 5 minutes) and per client address (30 per 5
minutes), then 429 with Retry-After. The cookie is HttpOnly and SameSite=Lax, and Secure behind https.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from aigc.accounts.limits import Limit, UsageBook
from aigc.accounts.users import SESSION_DAYS
from aigc.server.app_http import read_body
from aigc.server.app_schemas import KeyIn, LoginIn
from aigc.server.auth import SESSION_COOKIE, AccessGate, principal_of
from aigc.server.errors import APIError

router = APIRouter(prefix="/api")
LOGIN_FAILURES = Limit(5, 300, "5/5 minutes")  # per account
ADDRESS_FAILURES = Limit(30, 300, "30/5 minutes")  # per client address (a NAT may hold several people)


def _gate(request: Request) -> AccessGate:
    return request.app.state.gate


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _me(request: Request) -> dict:
    p = principal_of(request)
    gate = _gate(request)
    user = None if p is None else {"id": p.user_id, "name": p.name, "username": p.name, "role": p.role,
                                   "via": p.via}
    return {"user": user, "username": user and user["name"], "role": user and user["role"],
            "login_required": gate.login_required(), "mode": "accounts" if gate.users_exist() else "single-user"}


@router.post("/auth/login")
async def login(request: Request) -> Response:
    body = await read_body(request, LoginIn)
    gate = _gate(request)
    address = request.client.host if request.client else "-"
    subjects: list[tuple[str, int | str]] = [("login-user", body.username), ("login-addr", address)]
    waits = [w for w in (gate.logins.blocked_for(subjects[:1], LOGIN_FAILURES),
                         gate.logins.blocked_for(subjects[1:], ADDRESS_FAILURES)) if w is not None]
    if waits:
        wait = max(waits)
        retry = max(1, round(wait + 0.5))
        raise APIError(429, f"Too many failed logins; try again in {retry} s.", code="too_many_logins",
                       headers={"Retry-After": str(retry)})
    user = await run_in_threadpool(gate.users.authenticate, body.username, body.password)
    if user is None:
        gate.logins.hit(subjects)
        raise APIError(401, "Wrong user name or password.", code="invalid_credentials")
    token = await run_in_threadpool(gate.users.create_session, user.id)
    response = JSONResponse({"user": {"id": user.id, "name": user.name, "username": user.name, "role": user.role,
                                      "via": "session"}, "username": user.name, "role": user.role})
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_DAYS * 86400, httponly=True, samesite="lax",
                        secure=_is_https(request), path="/")
    return response


@router.post("/auth/logout", status_code=204)
async def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await run_in_threadpool(_gate(request).users.end_session, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_is_https(request))
    return response


@router.get("/auth/me")
async def me(request: Request) -> JSONResponse:
    info = await run_in_threadpool(_me, request)
    if info["user"] is None:
        return APIError(401, "Log in to use this server.", code="login_required").response()
    return JSONResponse(info)


def _account(request: Request):
    p = principal_of(request)
    if p.user_id is None:
        raise APIError(400, "API keys belong to users: add one with `aigc users add NAME --admin` and log in.",
                       code="accounts_disabled")
    return p


@router.get("/keys")
async def list_keys(request: Request, all: int = 0) -> JSONResponse:
    p = _account(request)
    user_id = None if all and p.is_admin else p.user_id
    return JSONResponse({"data": await run_in_threadpool(_gate(request).users.list_keys, user_id)})


@router.post("/keys", status_code=201)
async def create_key(request: Request) -> JSONResponse:
    p = _account(request)
    body = await read_body(request, KeyIn)
    key, info = await run_in_threadpool(_gate(request).users.create_key, p.user_id, body.name)
    return JSONResponse({**info, "key": key}, status_code=201)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, request: Request) -> Response:
    p = _account(request)
    found = key_id.isascii() and key_id.isdigit() and len(key_id) < 18 and await run_in_threadpool(
        _gate(request).users.revoke_key, int(key_id), None if p.is_admin else p.user_id)
    if not found:
        raise APIError(404, f"No API key {key_id!r}.", code="not_found")
    return Response(status_code=204)


@router.get("/usage")
async def usage(request: Request, all: int = 0) -> JSONResponse:
    p = _account(request)
    book = UsageBook(request.app.state.webapp.db)
    user_id = None if all and p.is_admin else p.user_id
    return JSONResponse({"data": await run_in_threadpool(book.summary, user_id)})
