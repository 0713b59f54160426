"""Aggregate decode throughput of the serving engine with 1, 4 and 16 concurrent requests.

Loads the bundled SmolLM2-135M-Instruct GGUF, starts an `Engine`, submits N chat requests at once
(different prompts, ignore_eos, a fixed number of new tokens) and reports:
- decode tok/s: tokens produced while all N requests were decoding (after the last one's first token,
  before the first one finished), divided by that window: the steady-state batch rate;
- end-to-end tok/s: all completion tokens / wall time including queueing and prefill;
- mean time to first token.

Usage: python benchmarks/engine_throughput.py [--concurrency 1 4 16] [--max-tokens 64] [--threads 2]
       [--device cuda] [--random-weights --tokenizer DIR]  (SmolLM2-135M's shape, no GGUF needed)
Not run by the tests. Other tenants may share the CPU: compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch

from aigc.engine import Engine, EngineRequest
from aigc.generation.params import SamplingParams
from aigc.models.config import ModelConfig
from aigc.models.transformer import Transformer
from aigc.tokenizer import Tokenizer

# SmolLM2-135M's shape, for --random-weights (speed does not depend on the weights' values).
SMOLLM2_135M = ModelConfig(family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                           num_layers=30, num_heads=9, num_kv_heads=3, max_position_embeddings=8192,
                           rope_theta=100000.0, tie_word_embeddings=True)

TOPICS = ["the sea", "a library", "winter", "coffee", "a robot", "the moon", "trains", "music",
          "a garden", "mountains", "rain", "a city at night", "friendship", "the desert", "bees", "clocks"]


async def one_round(engine: Engine, prompts: list[list[int]], max_tokens: int) -> dict[str, float]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.7, ignore_eos=True)
    start = time.perf_counter()
    streams = [engine.submit(EngineRequest(p, params)) for p in prompts]

    async def times(stream) -> list[float]:
        return [time.perf_counter() async for _ in stream]

    stamps = await asyncio.gather(*(times(s) for s in streams))
    end = time.perf_counter()
    window_start = max(t[0] for t in stamps)
    window_end = min(t[-1] for t in stamps)
    in_window = sum(window_start < x <= window_end for t in stamps for x in t)
    total = sum(len(t) for t in stamps)
    decode = in_window / (window_end - window_start) if window_end > window_start else float("nan")
    return {"decode": decode, "e2e": total / (end - start),
            "ttft": sum(s.metrics.time_to_first_token_s for s in streams) / len(streams)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-context", type=int, default=1024)
    ap.add_argument("--random-weights", action="store_true", help="SmolLM2-135M's shape with random weights")
    ap.add_argument("--tokenizer", help="tokenizer directory or .gguf (with --random-weights)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.random_weights:
        if not args.tokenizer:
            ap.error("--random-weights needs --tokenizer")
        model, tok = Transformer(SMOLLM2_135M), Tokenizer.load(args.tokenizer)
        model.init_weights()
        model = model.to(dtype=getattr(torch, args.dtype)).requires_grad_(False)
    else:
        from aigc.models.loader import load_model  # reads GGUF files (needs the gguf package)

        loaded = load_model(args.model, dtype=args.dtype)
        model, tok = loaded.model, loaded.tokenizer
    model = model.to(args.device)
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"Write a short poem about {t}."}],
                                       tokenize=True) for t in TOPICS]
    engine = Engine(model, tok, args.model, max_concurrency=max(args.concurrency),
                    max_context=args.max_context)
    engine.start()
    try:
        asyncio.run(one_round(engine, prompts[:2], 8))  # warm-up
        name = "random SmolLM2-135M shape" if args.random_weights else args.model
        print(f"{name} on {args.device} ({args.dtype}, {torch.get_num_threads()} threads), "
              f"{args.max_tokens} new tokens per request")
        print(f"{'concurrent':>10} {'decode tok/s':>13} {'end-to-end tok/s':>17} {'mean TTFT s':>12}")
        for n in args.concurrency:
            # Distinct prompts (cycled with a suffix) so the prefix cache does not skip prefills.
            batch = [prompts[i % len(prompts)] + tok.encode(" " * (i // len(prompts))) for i in range(n)]
            r = asyncio.run(one_round(engine, batch, args.max_tokens))
            print(f"{n:>10} {r['decode']:>13.1f} {r['e2e']:>17.1f} {r['ttft']:>12.3f}")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
