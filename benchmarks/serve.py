"""Serving benchmark: a real `aigc serve` driven by 1, 4 and 16 concurrent streaming clients.

    .venv/bin/python benchmarks/serve.py [--prompt-tokens 200] [--new-tokens 128] [--concurrency 1 4 16]

For each concurrency level: aggregate generated tokens/s, time to first token (p50/p99) and
inter-token latency (p50/p99), measured by the official `openai` client. The baseline, in the same
run, is HF `transformers.generate` on the same prompts one after another. A chat benchmark then
checks prefix reuse: the TTFT of a turn whose history is 10x longer than the first turn's prompt.
Targets (SmolLM2-135M): 16 concurrent >= 6x single-stream throughput; TTFT p50 <= 250 ms at 4
concurrent; long-history turn TTFT <= 1.5x the first turn's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import httpx
from openai import AsyncOpenAI

MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, max_concurrency: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "aigc", "serve", "--model", MODEL, "--port", str(port),
           "--max-concurrency", str(max_concurrency), "--max-queue", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "AIGC_DATABASE_URL": "sqlite:///:memory:"})
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become healthy")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def one_stream(client: AsyncOpenAI, prompt: list[int], new_tokens: int) -> tuple[float, list[float], int]:
    """(TTFT, inter-token gaps, generated tokens) of one streamed completion."""
    start = time.perf_counter()
    ttft, last, gaps, tokens = None, None, [], 0
    stream = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=new_tokens, temperature=0.7,
                                             seed=len(prompt), stream=True,
                                             stream_options={"include_usage": True})
    async for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].text:
            if ttft is None:
                ttft = now - start
            elif last is not None:
                gaps.append(now - last)
            last = now
    return ttft or float("nan"), gaps, tokens


async def drive(base_url: str, prompts: list[list[int]], concurrency: int, new_tokens: int) -> dict:
    async with AsyncOpenAI(base_url=base_url, api_key="bench", timeout=600) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, p, new_tokens) for p in prompts[:concurrency]))
        wall = time.perf_counter() - start
    ttfts = [r[0] for r in results]
    gaps = [g for r in results for g in r[1]]
    tokens = sum(r[2] for r in results)
    return {"concurrency": concurrency, "tokens": tokens, "tok_s": tokens / wall,
            "ttft_p50": pct(ttfts, 0.5), "ttft_p99": pct(ttfts, 0.99),
            "itl_p50": pct(gaps, 0.5), "itl_p99": pct(gaps, 0.99)}


async def chat_prefix_reuse(base_url: str, tokenizer, first_tokens: int) -> tuple[float, float, int, int]:
    """TTFT of a first turn vs. a later turn whose history is >= 10x longer (its prefix cached)."""
    async with AsyncOpenAI(base_url=base_url, api_key="bench", timeout=600) as client:
        return await _chat_turns(client, tokenizer, first_tokens)


async def _chat_turns(client: AsyncOpenAI, tokenizer, first_tokens: int) -> tuple[float, float, int, int]:
    filler = "Tell me more about the history of the Roman Empire and its provinces. "
    first_msg = filler * max(1, first_tokens // 14)

    async def turn(messages) -> tuple[float, str]:
        start = time.perf_counter()
        ttft, text = None, []
        stream = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=32,
                                                      temperature=0, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                ttft = ttft or time.perf_counter() - start
                text.append(chunk.choices[0].delta.content)
        return ttft or float("nan"), "".join(text)

    history = [{"role": "user", "content": first_msg}]
    first_len = len(tokenizer.apply_chat_template(history, tokenize=True))
    ttft_first, answer = await turn(history)
    # Grow the history to 10x the first prompt (these turns warm the cache as a real chat would).
    while len(tokenizer.apply_chat_template(history, tokenize=True)) < 10 * first_len:
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": first_msg}]
        _, answer = await turn(history)
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Summarise in one line."}]
    long_len = len(tokenizer.apply_chat_template(history, tokenize=True))
    ttft_long, _ = await turn(history)
    return ttft_first, ttft_long, first_len, long_len


def hf_baseline(prompts: list[list[int]], new_tokens: int) -> float:
    """Aggregate tokens/s of HF transformers.generate on the prompts, one after another."""
    import torch

    from aigc.models.loader import load_model
    sys.path.insert(0, os.path.dirname(__file__))
    from decode import hf_model_from

    hf = hf_model_from(load_model(MODEL).model)
    tokens, start = 0, time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            out = hf.generate(torch.tensor([p]), max_new_tokens=new_tokens, do_sample=True, temperature=0.7,
                              top_k=0, pad_token_id=0)
            tokens += out.shape[1] - len(p)
    return tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--baseline-requests", type=int, default=2, help="HF generate runs (sequential)")
    args = ap.parse_args()

    from aigc.models.loader import load_model

    tok = load_model(MODEL).tokenizer
    words = ("river mountain city history science music ocean garden winter market library "
             "engine village story forest bridge").split()
    prompts = []
    for i in range(max(args.concurrency)):
        text = " ".join(words[(i * 7 + j) % len(words)] for j in range(args.prompt_tokens * 2))
        prompts.append(tok.encode(f"Request {i}: {text}")[: args.prompt_tokens])

    port = free_port()
    proc = start_server(port, max(args.concurrency))
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        asyncio.run(drive(base_url, prompts, 1, 8))  # warm-up
        rows = [asyncio.run(drive(base_url, prompts, c, args.new_tokens)) for c in args.concurrency]
        first, long, first_len, long_len = asyncio.run(chat_prefix_reuse(base_url, tok, args.prompt_tokens))
    finally:
        proc.terminate()
        proc.wait(30)
    hf = hf_baseline(prompts[: args.baseline_requests], args.new_tokens)

    print(f"{'clients':>7} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}")
    for r in rows:
        print(f"{r['concurrency']:>7} {r['tok_s']:>8.1f} {r['ttft_p50'] * 1e3:>7.0f}ms {r['ttft_p99'] * 1e3:>7.0f}ms "
              f"{r['itl_p50'] * 1e3:>6.0f}ms {r['itl_p99'] * 1e3:>6.0f}ms")
    print(f"HF transformers.generate, sequential: {hf:.1f} tok/s")
    by_c = {r["concurrency"]: r for r in rows}
    if 1 in by_c and max(by_c) > 1:
        top = max(by_c)
        print(f"RESULT {top} concurrent = {by_c[top]['tok_s'] / by_c[1]['tok_s']:.1f}x single-stream throughput "
              f"(target 6x); {by_c[top]['tok_s'] / hf:.1f}x HF sequential")
    if 4 in by_c:
        print(f"RESULT TTFT p50 at 4 concurrent: {by_c[4]['ttft_p50'] * 1e3:.0f} ms (target <= 250 ms)")
    print(f"RESULT chat TTFT: first turn ({first_len} prompt tokens) {first * 1e3:.0f} ms; turn with "
          f"{long_len}-token history {long * 1e3:.0f} ms = {long / first:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
