"""Helpers for the browser tests: a real `aigc serve` subprocess and screenshots."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "web"
MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url = url
        self.proc = proc
        self.log = log

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def start_server(tmp: Path, *, models: str | None = None, wait_for_model: bool = True,
                 database_url: str | None = None, env_extra: dict[str, str] | None = None) -> LiveServer:
    port = free_port()
    env = {**os.environ, "AIGC_DATABASE_URL": database_url or f"sqlite:///{tmp}/web.db",
           "PYTHONPATH": str(ROOT / "src"), "AIGC_LOG_LEVEL": "warning", **(env_extra or {})}
    if models is not None:
        env["AIGC_MODELS"] = models
    log = tmp / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "aigc", "serve", "--port", str(port), "--max-concurrency", "4",
                             "--max-context", "2048"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            r = httpx.get(url + "/health", timeout=2)
            if r.status_code == 200 or (not wait_for_model and r.status_code == 503):
                return LiveServer(url, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not become healthy in time")


def stop_server(server: LiveServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()




def shot(page, name: str) -> Path:
    """Save a screenshot to test-artifacts/web/NAME.png (look at them after a run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
