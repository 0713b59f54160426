"""How long the web app takes to open a conversation of 1,000 messages in headless Chromium.

Starts `aigc serve` with no model (rendering needs none) on a fresh SQLite database holding one
conversation of N Markdown-rich messages (paragraphs, lists, inline code, a code block in every
fourth reply) and a small one; then clicks between them and times, inside the page, from the click
to the frame after the last message is in the DOM (fetch + JSON + Markdown + DOM + layout).

    python benchmarks/web_render.py [--messages 1000] [--runs 7]

Needs /usr/bin/chromium and the `playwright` package (`make install-test` provides both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aigc.store import Conversation, Database, Message  # noqa: E402

REPLY = """Here is what I found about **topic {i}**:

1. The first point explains the idea in a sentence or two, with `inline code` here and there.
2. The second point adds a [reference](https://example.com/{i}) and *some emphasis*.
3. A third point, because lists of three read well.

{code}In short: it works, and the details above say why."""
CODE = "```python\ndef answer_{i}(x):\n    return x * {i}  # a small example\n```\n\n"

OPEN_AND_WAIT = """async ([id, n]) => {
  const start = performance.now();
  document.querySelector(`.conv-item[data-id="${id}"]`).click();
  await new Promise((resolve) => {
    const check = () => {
      if (document.getElementById("messages").dataset.rendered === String(n)
          && window.aigcPerf && window.aigcPerf.messages === n) {
        requestAnimationFrame(() => setTimeout(resolve, 0));  // after the layout of that frame
      } else requestAnimationFrame(check);
    };
    check();
  });
  return {total: performance.now() - start, fetch: window.aigcPerf.fetchMs, render: window.aigcPerf.renderMs,
          nodes: document.getElementById("messages").getElementsByTagName("*").length};
}"""


def make_database(path: Path, n: int) -> tuple[int, int]:
    db = Database(f"sqlite:///{path}")
    with db.session() as s:
        big = Conversation(title=f"{n} messages", model="none")
        for i in range(n):
            if i % 2 == 0:
                content = f"Question {i}: could you explain topic {i} with an example?"
            else:
                content = REPLY.format(i=i, code=CODE.format(i=i) if i % 8 == 1 else "")
            big.messages.append(Message(position=i, role="user" if i % 2 == 0 else "assistant", content=content))
        small = Conversation(title="small")
        small.messages = [Message(position=0, role="user", content="hi"),
                          Message(position=1, role="assistant", content="hello")]
        s.add_all([big, small])
        s.flush()
        ids = big.id, small.id
    db.dispose()
    return ids


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        big, small = make_database(Path(tmp) / "bench.db", args.messages)
        port = free_port()
        env = {**os.environ, "AIGC_DATABASE_URL": f"sqlite:///{tmp}/bench.db", "AIGC_MODELS": "[]",
               "PYTHONPATH": str(ROOT / "src"), "AIGC_LOG_LEVEL": "error"}
        server = subprocess.Popen([sys.executable, "-m", "aigc", "serve", "--port", str(port)], env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            api_ms = []
            for _ in range(3):
                t0 = time.perf_counter()
                body = httpx.get(f"{url}/api/conversations/{big}").content
                api_ms.append((time.perf_counter() - t0) * 1000)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                page = browser.new_page(viewport={"width": 1280, "height": 820})
                page.goto(url + "/")
                page.wait_for_selector("body[data-ready='1']")
                runs = []
                for _ in range(args.runs):
                    page.evaluate(OPEN_AND_WAIT, [small, 2])
                    runs.append(page.evaluate(OPEN_AND_WAIT, [big, args.messages]))
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
    total = [r["total"] for r in runs]
    result = {
        "messages": args.messages, "runs": args.runs, "json_bytes": len(body),
        "api_get_ms_median": round(statistics.median(api_ms), 1),
        "open_ms_median": round(statistics.median(total), 1), "open_ms_min": round(min(total), 1),
        "open_ms_max": round(max(total), 1),
        "fetch_ms_median": round(statistics.median(r["fetch"] for r in runs), 1),
        "render_ms_median": round(statistics.median(r["render"] for r in runs), 1),
        "dom_nodes": runs[-1]["nodes"],
    }
    print(json.dumps(result, indent=2))
    verdict = "OK" if result["open_ms_median"] < 1000 else "SLOW"
    print(f"{verdict}: opening {args.messages} messages takes {result['open_ms_median']:.0f} ms (median), budget 1000 ms")


if __name__ == "__main__":
    main()
