"""Moderation cost: the latency of one check of a 200-token text, and what the streamed-output
guard costs a real `aigc serve` on the bundled model (tokens/s and time to first token with
`--moderation off` and `--moderation block`, same prompts, same run).

    python benchmarks/moderation.py [--requests 6] [--max-tokens 128]

Targets (the issue): <= 15 ms per check, <= 5% throughput.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROMPTS = ["Write a short story about a lighthouse keeper.", "Explain how rainbows form.",
           "Give me tips for learning to cook.", "Describe an autumn morning by a lake.",
           "What should I pack for a weekend trip?", "Tell me about the history of paper."]


def check_latency() -> dict[str, float]:
    """p50 ms of one check: a 200-token text on the fast path (classifier + lexicon: what judges
    streamed output windows) and with the semantic layer (what judges inputs), and a short prompt."""
    from aigc.safety.moderation import default_moderator

    m = default_moderator()
    out = {}
    texts = {"zh": "这是一段很长的客服回复，用来测量审核模型的延迟。" * 9,
             "en": "This customer-service answer is long enough to measure the moderation check. " * 12}
    for lang, text in texts.items():
        texts[lang] = m.tokenizer.decode(m.tokenizer.encode(text)[:200])
    texts["prompt"] = "Write a short story about a lighthouse keeper."

    def p50(text: str, semantic: bool) -> float:
        m.check([text], semantic=semantic)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            m.check([text], semantic=semantic)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    for lang, text in texts.items():
        out[f"fast {lang}"] = p50(text, semantic=False)
        if m.semantic is not None:
            out[f"semantic {lang}"] = p50(text, semantic=True)
    return out


def serve(mode: str, port: int, folder: str) -> subprocess.Popen:
    env = {**os.environ, "AIGC_DATABASE_URL": f"sqlite:///{folder}/{mode}.db", "AIGC_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "aigc", "serve", "--port", str(port), "--moderation", mode],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server ({mode}) did not start")


def stream_figures(port: int, requests: int, max_tokens: int) -> tuple[float, float, int]:
    """(median time to first token in ms, mean decode tokens/s after the first, answers cut or refused)
    over one request at a time; a refused or cut answer is left out of the timings."""
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    ttfts, rates = [], []
    filtered = 0
    for i in range(requests):
        t0 = time.perf_counter()
        first = None
        tokens = 0
        finish = None
        for chunk in client.chat.completions.create(model="smollm2-135m-instruct", stream=True, max_tokens=max_tokens,
                                                    temperature=0, messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                                                    stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter()
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        end = time.perf_counter()
        if finish == "content_filter" or first is None or tokens < 2:
            filtered += 1
            continue
        ttfts.append((first - t0) * 1000)
        rates.append((tokens - 1) / (end - first))
    return statistics.median(ttfts), statistics.mean(rates), filtered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    print(f"CPU: {platform.processor() or platform.machine()} · {os.cpu_count()} cores")
    latency = check_latency()
    print(f"one check of a 200-token text, fast path (classifier + lexicon): p50 zh {latency['fast zh']:.1f} ms, "
          f"en {latency['fast en']:.1f} ms (target <= 15 ms); a 10-token prompt {latency['fast prompt']:.1f} ms")
    if "semantic zh" in latency:
        print(f"with the semantic layer (inputs, /v1/moderations): 200 tokens zh {latency['semantic zh']:.1f} ms, "
              f"en {latency['semantic en']:.1f} ms; a 10-token prompt {latency['semantic prompt']:.1f} ms")
    folder = tempfile.mkdtemp(prefix="aigc-mod-bench-")
    results = {}
    for mode, port in (("off", 18731), ("block", 18732)):
        proc = serve(mode, port, folder)
        try:
            stream_figures(port, 1, 16)  # warm
            results[mode] = stream_figures(port, args.requests, args.max_tokens)
        finally:
            proc.terminate()
            proc.wait(30)
    (t_off, r_off, _), (t_on, r_on, cut) = results["off"], results["block"]
    print(f"--moderation off:   TTFT p50 {t_off:.0f} ms, {r_off:.1f} tokens/s after the first")
    print(f"--moderation block: TTFT p50 {t_on:.0f} ms, {r_on:.1f} tokens/s after the first "
          f"({cut} of {args.requests} answers refused or cut, left out)")
    print(f"guard cost: throughput {100 * (r_on / r_off - 1):+.1f}% (target: no worse than -5%), "
          f"TTFT {t_on - t_off:+.0f} ms")


if __name__ == "__main__":
    main()
