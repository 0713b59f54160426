"""`aigc serve`: check the bind is safe, build the app, run uvicorn.

Safe defaults: the server binds 127.0.0.1; binding any other address without an API key is
refused (anyone on the network could use the models) unless `--insecure` says so on purpose.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

import uvicorn

from aigc.server.app import backends_from_settings, create_app
from aigc.server.backends import ModelBackends
from aigc.server.remote import RemoteSpec, parse_remote_spec
from aigc.settings import Settings

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


def check_bind(settings: Settings) -> None:
    if not is_loopback(settings.host) and not settings.api_keys and not settings.insecure:
        raise ServeConfigError(
            f"refusing to listen on {settings.host} without an API key: pass --api-key KEY "
            "(or --insecure to allow anyone who can reach this address), or bind 127.0.0.1"
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
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                access_log=False)
