"""`aigc serve`: check the bind is safe, build the app, run uvicorn.

Safe defaults: the server binds 127.0.0.1; binding any other address with no account and no API
key is refused (anyone on the network could use the models and read the chats) unless
`--insecure` says so on purpose; an empty API key is refused everywhere.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

import uvicorn

from aigc.accounts.limits import parse_limit
from aigc.safety.log_redaction import install_log_redaction
from aigc.server.app import backends_from_settings, create_app
from aigc.server.backends import ModelBackends
from aigc.server.remote import RemoteSpec, parse_remote_spec
from aigc.settings import Settings
from aigc.store import Database

__all__ = ["ServeConfigError", "check_bind", "is_loopback", "parse_remote_spec", "RemoteSpec", "serve"]


class ServeConfigError(ValueError):
    """A configuration `serve` refuses; the message is one line meant for the user."""


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name: it may resolve to anything
        return False


def _has_users(settings: Settings) -> bool:
    from aigc.server.auth import AccessGate

    gate = AccessGate(settings, lambda: Database(settings.database_url))
    return gate.users_exist()


def check_bind(settings: Settings) -> None:
    """Refuse what would leave the server open by mistake: an empty key (an unset $VARIABLE), or a
    non-loopback bind where nobody has to log in."""
    if any(not k.strip() for k in settings.api_keys):
        raise ServeConfigError("an --api-key is empty (an unset environment variable?): give a real key or "
                               "leave --api-key out")
    for value, name, unit in ((settings.rate_limit, "--rate-limit", "requests"),
                              (settings.token_quota, "--token-quota", "tokens")):
        if value:
            try:
                parse_limit(value, unit)
            except ValueError as e:
                raise ServeConfigError(f"{name}: {e}") from None
    if not is_loopback(settings.host) and not settings.api_keys and not settings.insecure and \
            not _has_users(settings):
        raise ServeConfigError(
            f"refusing to listen on {settings.host} with no account and no API key: add an admin with "
            "`aigc users add NAME --admin` (or pass --api-key KEY; --insecure allows anyone), or bind 127.0.0.1"
        )


def serve(settings: Settings, *, environ: Mapping[str, str] | None = None,
          backends: ModelBackends | None = None) -> None:
    """Run the server until interrupted. `environ` supplies the remotes' `key=ENV_VAR` values.

    Raises ServeConfigError (unsafe bind) or ValueError (bad --remote spec) before listening.
    """
    check_bind(settings)
    if backends is None:
        backends = backends_from_settings(settings, environ or {})
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aigc").setLevel(level)
    app = create_app(settings, backends)
    # Our request log replaces uvicorn's access log (one line per request, with tokens and timings).
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    if "logs" in settings.redact_pii:  # uvicorn.Config made its handlers: they get the filter too
        install_log_redaction()
    DrainingServer(config).run()


SHUTDOWN_GRACE_S = 30  # how long open requests get to finish after SIGTERM / Ctrl-C


class DrainingServer(uvicorn.Server):
    """SIGTERM or Ctrl-C: stop taking connections, end every web-app reply as if its user pressed
    stop (the partial text is stored, marked "stopped", and its stream ends with `done`), let API
    streams finish (up to SHUTDOWN_GRACE_S), then exit."""

    def handle_exit(self, sig: int, frame: object) -> None:
        if not self.should_exit:
            webapp = getattr(self.config.app.state, "webapp", None)
            if webapp is not None:
                webapp.stop_all()
        super().handle_exit(sig, frame)
