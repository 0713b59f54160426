"""Batch-1 decode speed on the bundled SmolLM2-135M: ours (fp32, bf16) vs HF transformers.generate,
against the memory-bandwidth roofline measured in the same run.

    .venv/bin/python benchmarks/decode.py [--new-tokens 128] [--prompt-tokens 32] [--repeats 3]

Prints one line per configuration and the ratios the targets are stated in:
ours / HF generate (target >= 1.5x) and ours / roofline (target >= 70%).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def measure_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """GB/s reading a large fp32 array (bigger than the L3 cache)."""
    x = torch.ones(int(gib * 2**30 / 4), dtype=torch.float32)
    x.sum()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t)
    return x.numel() * 4 / statistics.median(times) / 1e9


def weight_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes streamed per decoded token: every matrix once (tied embeddings are read by the LM head)."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        if name == "tok_emb.weight" and not model.config.tie_word_embeddings:
            continue  # an untied embedding is only indexed, one row per token
        total += p.numel() * p.element_size()
    return total


def time_ours(model, prompt, new_tokens, repeats) -> tuple[float, float]:
    from aigc.engine.offline import generate
    from aigc.generation.params import SamplingParams

    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    generate(model, [prompt], SamplingParams(max_tokens=8, temperature=0))  # warm-up
    prefill, decode = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        generate(model, [prompt], SamplingParams(max_tokens=1, temperature=0, ignore_eos=True), eos_token_ids=[])
        t_prefill = time.perf_counter() - t
        t = time.perf_counter()
        out = generate(model, [prompt], params, eos_token_ids=[])[0][0]
        total = time.perf_counter() - t
        assert len(out.token_ids) == new_tokens
        prefill.append(len(prompt) / t_prefill)
        decode.append((new_tokens - 1) / (total - t_prefill))
    return statistics.median(prefill), statistics.median(decode)


def time_hf(hf, prompt, new_tokens, repeats) -> float:
    ids = torch.tensor([prompt])
    kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        hf.generate(ids, max_new_tokens=8, min_new_tokens=8, **kw)
        speeds = []
        for _ in range(repeats):
            t = time.perf_counter()
            hf.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            t_prefill = time.perf_counter() - t
            t = time.perf_counter()
            hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
            speeds.append((new_tokens - 1) / (time.perf_counter() - t - t_prefill))
    return statistics.median(speeds)


def hf_model_from(model) -> torch.nn.Module:
    import transformers

    from aigc.models.hf_checkpoint import native_to_hf

    cfg = transformers.AutoConfig.for_model(**model.config.to_hf_dict())
    hf = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    hf.load_state_dict(native_to_hf(model.config, model.state_dict()), strict=False)
    hf.tie_weights()
    return hf.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from aigc.models.loader import load_model

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bw = measure_bandwidth()
    lm = load_model(args.model)
    text = "The history of the Roman Empire spans many centuries and " * 20
    prompt = lm.tokenizer.encode(text)[: args.prompt_tokens]

    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = lm.model.to(dtype)
        nbytes = weight_bytes_per_token(model)
        roof = bw * 1e9 / nbytes
        pre, dec = time_ours(model, prompt, args.new_tokens, args.repeats)
        results[dtype] = dec
        name = str(dtype).removeprefix("torch.")
        print(f"ours {name:9s} prefill {pre:8.1f} tok/s  decode {dec:6.1f} tok/s  "
              f"weights {nbytes / 1e6:6.1f} MB/token  roofline {roof:6.1f} tok/s  ({dec / roof:4.0%} of roofline)")
    lm.model.to(torch.float32)
    hf = hf_model_from(lm.model)
    hf_dec = time_hf(hf, prompt, args.new_tokens, args.repeats)
    print(f"HF transformers.generate float32 decode {hf_dec:6.1f} tok/s")
    best = max(results.values())
    roof32 = bw * 1e9 / weight_bytes_per_token(lm.model)
    print(f"memory bandwidth {bw:.1f} GB/s")
    print(f"RESULT best ours decode {best:.1f} tok/s = {best / hf_dec:.2f}x HF generate (target 1.5x), "
          f"{results[torch.float32] / roof32:.0%} of the fp32 roofline (target 70%)")


if __name__ == "__main__":
    main()
