"""Cost of structured outputs: decode tokens/s with a JSON-schema mask against free decoding on the
same prompts, at batch 1 and batch 8, plus grammar compile times.

    python benchmarks/structured_outputs.py [--model smollm2-135m-instruct] [--tokens 64]

Both sides run through the engine `aigc serve` runs (no HTTP), sampling at temperature 1 with the
same seeds. Free decoding ignores end-of-sequence so it runs its full budget; constrained choices end
when their JSON is complete, so both are compared per stream and step (the engine's own timing:
each stream's tokens after the first / its time after the first token, summed over the batch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from aigc.engine import Engine, EngineRequest
from aigc.generation.guided import Constraint, GuidedDecoding, _ll_tokenizer
from aigc.generation.params import SamplingParams
from aigc.models.loader import load_model

SCHEMAS = {
    "person": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
               "required": ["name", "age"]},
    "nested": {"type": "object", "properties": {"city": {"type": "string"}, "location": {
        "type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
        "required": ["lat", "lon"]}}, "required": ["city", "location"]},
    "array": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["tags"]},
    "enum": {"type": "object", "properties": {"mood": {"enum": ["happy", "sad", "angry"]},
                                              "score": {"type": "integer", "minimum": 1, "maximum": 5}},
             "required": ["mood", "score"]},
    "long_text": {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]},
}


def decode_rate(engine: Engine, prompts: list[list[int]], params: SamplingParams) -> float:
    """Decode tokens/s per stream (each stream's tokens after its first / its time after its first),
    summed over the streams submitted together: constrained choices that end early then do not make
    the batch look slower than its steps are."""
    streams = [engine.submit(EngineRequest(p, params)) for p in prompts]
    for s in streams:
        list(s)
    return sum((s.metrics.completion_tokens - 1) / max(s.metrics.total_s - s.metrics.time_to_first_token_s, 1e-9)
               for s in streams)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("AIGC_SPECULATION", "0")
    lm = load_model(args.model, quantize="auto")  # what `aigc serve` runs
    tok = lm.tokenizer
    t = time.perf_counter()
    _ll_tokenizer(tok, lm.model.config.vocab_size)
    print(f"grammar tokenizer view built once per tokenizer: {(time.perf_counter() - t) * 1e3:.0f} ms")
    for name, schema in SCHEMAS.items():
        t = time.perf_counter()
        Constraint(GuidedDecoding.json_schema(schema), tok, lm.model.config.vocab_size)
        print(f"compile {name}: {(time.perf_counter() - t) * 1e3:.2f} ms")
    engine = Engine(lm.model, tok, lm.name, max_concurrency=8, max_context=2048)
    engine.start()
    try:
        print("\n| batch | schema | free tok/s | constrained tok/s | ratio |\n|---|---|---|---|---|")
        for batch in (1, 8):
            for name in ("person", "long_text"):
                prompts = [tok.apply_chat_template([{"role": "user", "content": f"Write record {i} as JSON."}],
                                                   tokenize=True) for i in range(batch)]
                free = SamplingParams(max_tokens=args.tokens, temperature=1.0, seed=1, ignore_eos=True)
                guided = SamplingParams(max_tokens=args.tokens, temperature=1.0, seed=1,
                                        guided=GuidedDecoding.json_schema(SCHEMAS[name]))
                decode_rate(engine, prompts, free)  # warm-up
                a = statistics.median(decode_rate(engine, prompts, free) for _ in range(3))
                b = statistics.median(decode_rate(engine, prompts, guided) for _ in range(3))
                print(f"| {batch} | {name} | {a:.1f} | {b:.1f} | {b / a:.2f}x |", flush=True)
    finally:
        engine.stop()
    print(json.dumps({"model": lm.name, "tokens": args.tokens}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
