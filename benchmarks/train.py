"""Pretraining throughput: tokens/s and MFU of a ~20M-parameter model, against peaks measured in the same run.

Measures the fp32 and bf16 matmul peaks of the device first (square matmuls, best of several), then
times full optimizer steps of the pretraining loop's own pieces (`lm_loss` under autocast, backward,
gradient clipping, fused AdamW) on random tokens, for each requested autocast dtype.
MFU = training FLOPs per token (6N + attention, see aigc.training.flops) x tokens/s / peak.

Usage: python benchmarks/train.py [--dtypes float32 bfloat16] [--steps 5] [--batch-size 4] [--compile]
Not run by the tests. Other tenants may share the CPU: compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from aigc.models.transformer import Transformer
from aigc.training.flops import measure_peak_flops, training_flops_per_token
from aigc.training.loop import cpu_has_native_bf16
from aigc.training.optim import build_optimizer
from aigc.training.pretrain import lm_loss
from aigc.training.pretrain_config import PretrainConfig, model_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def time_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, dtype: torch.dtype, batch: int, block: int,
               vocab: int, steps: int, warmup: int, device: torch.device) -> list[float]:
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(warmup + steps):
        x = torch.randint(0, vocab, (batch, block + 1), generator=g).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = lm_loss(model, x[:, :-1], x[:, 1:], dtype)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=512)
    ap.add_argument("--n-head", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--dtypes", nargs="+", default=None, choices=list(DTYPES),
                    help="autocast dtypes to time (default: float32, plus bfloat16 where the device has "
                         "bf16 matrix instructions; emulated bf16 takes minutes per step)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile'd model")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.dtypes is None:
        args.dtypes = ["float32"] + (["bfloat16"] if device.type == "cuda" or cpu_has_native_bf16() else [])

    cfg = PretrainConfig(n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, block_size=args.block_size)
    mcfg = model_config(cfg, args.vocab, eos_token_id=0, pad_token_id=None)
    fpt = training_flops_per_token(mcfg, args.block_size)
    print(f"model: {mcfg.num_parameters() / 1e6:.1f}M parameters (layers {mcfg.num_layers}, width {mcfg.hidden_size}, "
          f"vocab {mcfg.vocab_size}), {fpt / 1e6:.0f} MFLOP/token; batch {args.batch_size} x {args.block_size}; "
          f"device {device} ({torch.get_num_threads()} threads); CPU bf16 instructions: {cpu_has_native_bf16()}")
    peaks = {name: measure_peak_flops(device, dt) for name, dt in DTYPES.items()}
    print("matmul peak: " + ", ".join(f"{n} {p / 1e9:,.1f} GFLOP/s" for n, p in peaks.items()))

    variants = [(d, False) for d in args.dtypes] + ([(d, True) for d in args.dtypes] if args.compile else [])
    for name, compiled in variants:
        torch.manual_seed(0)
        model = Transformer(mcfg)
        model.init_weights()
        model.to(device).train()
        opt = build_optimizer(model, 3e-4, 0.1)
        run_model = torch.compile(model) if compiled else model
        t0 = time.perf_counter()
        times = time_steps(run_model, opt, DTYPES[name], args.batch_size, args.block_size, mcfg.vocab_size,
                           args.steps, args.warmup_steps, device)
        total = time.perf_counter() - t0
        step_s = statistics.median(times)
        tps = args.batch_size * args.block_size / step_s
        achieved = tps * fpt
        mfu = ", ".join(f"MFU vs {n} peak {100 * achieved / p:.1f}%" for n, p in peaks.items())
        label = f"{name}{' compiled' if compiled else ''}"
        print(f"{label:>18}: {step_s * 1e3:,.0f} ms/step (median of {len(times)}), {tps:,.0f} tokens/s, "
              f"{achieved / 1e9:,.1f} GFLOP/s; {mfu}  [{total:.0f}s incl. warm-up]")


if __name__ == "__main__":
    main()
