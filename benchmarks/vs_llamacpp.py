"""aigc against llama.cpp on the same GGUF files, in one run: batch-1 decode, prefill, RSS.

    python benchmarks/vs_llamacpp.py [--cache ~/.cache/aigc-bench] [--skip-big] [--threads 2]

llama.cpp is built from the llama-cpp-python sdist (PyPI) into the cache folder on first use
(cmake, ~12 min on 2 cores; never inside the repo). Files: the bundled SmolLM2-135M Q4_1, the same
requantized to Q8_0 and F16 with llama-quantize, and a ~0.49B random-weight Llama-shape model written
with our GGUF writer (F16) and quantized by llama-quantize to Q8_0 and Q4_K_M.

Ours: the product path (`load_model(..., quantize="auto")` keeps the blocks; the engine runs one
native forward per step). Decode = 128 greedy tokens after a 32-token prompt, from the engine's own
metrics; prefill = time to first token of a fresh 200-token prompt. llama.cpp: `llama-bench -p 200
-n 128`. Prints every figure and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

from aigc import kernels
from aigc.engine import Engine, EngineRequest
from aigc.generation.params import SamplingParams
from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import read_gguf_metadata, write_gguf
from aigc.models.loader import load_model
from aigc.models.quantized import weight_bytes
from aigc.models.registry import bundled_path


def sh(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def build_llamacpp(cache: Path) -> Path:
    bin_dir = next(cache.glob("llama_cpp_python-*/vendor/llama.cpp/build/bin"), None)
    if bin_dir is not None and (bin_dir / "llama-bench").exists() and (bin_dir / "llama-quantize").exists():
        return bin_dir
    cache.mkdir(parents=True, exist_ok=True)
    print("building llama.cpp from the llama-cpp-python sdist (one time, ~12 min)...", flush=True)
    sh([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "llama-cpp-python", "-d",
        str(cache)])
    sdist = sorted(cache.glob("llama_cpp_python-*.tar.gz"))[-1]
    with tarfile.open(sdist) as t:
        t.extractall(cache, filter="data")
    src = next(cache.glob("llama_cpp_python-*/vendor/llama.cpp"))
    sh(["cmake", "-B", "build", "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON"], cwd=src)
    sh(["cmake", "--build", "build", "--target", "llama-bench", "llama-server", "llama-quantize", "-j2"], cwd=src)
    return src / "build" / "bin"


def quantized_copy(bin_dir: Path, src: Path, dst: Path, kind: str) -> Path:
    if not dst.exists():
        sh([str(bin_dir / "llama-quantize"), "--allow-requantize", str(src), str(dst), kind])
    return dst


def random_model(cache: Path, name: str, hf_config: dict, quant: str = "F16") -> Path:
    """`cache/NAME-random-QUANT.gguf`: a random-weight model of an HF config's shape with SmolLM2's
    tokenizer (llama.cpp needs a real one), written once by our GGUF writer."""
    from aigc.models.hf_checkpoint import native_to_hf
    from aigc.models.transformer import Transformer

    path = cache / f"{name}-random-{quant}.gguf"
    if path.exists():
        return path
    meta = read_gguf_metadata(bundled_path("smollm2-135m-instruct"))
    tok_meta = {k: v for k, v in meta.items() if k.startswith("tokenizer.")}
    cfg = ModelConfig.from_hf_dict({"vocab_size": 49152, "max_position_embeddings": 8192, "bos_token_id": 1,
                                    "eos_token_id": 2, **hf_config})
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.init_weights()
    partial = path.with_suffix(".partial")
    write_gguf(partial, cfg, native_to_hf(cfg, model.state_dict()), tok_meta, quant=quant)
    partial.replace(path)
    return path


def big_model(cache: Path) -> Path:
    """~0.49B-parameter Llama shape."""
    return random_model(cache, "llama-0.5b", {
        "architectures": ["LlamaForCausalLM"], "hidden_size": 1280, "intermediate_size": 3584,
        "num_hidden_layers": 24, "num_attention_heads": 20, "num_key_value_heads": 4, "tie_word_embeddings": True,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0})


# Other architectures at realistic small sizes (random weights, SmolLM2's tokenizer): the shapes of
# Qwen3-0.6B, Gemma-3-1B (sliding windows, 5 local : 1 global) and a small Phi-3.
FAMILY_SHAPES = {
    "Qwen3-0.6B shape": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 1024, "intermediate_size": 3072,
                         "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
                         "head_dim": 128, "tie_word_embeddings": True, "rope_theta": 1e6},
    "Gemma3-1B shape": {"architectures": ["Gemma3ForCausalLM"], "hidden_size": 1152, "intermediate_size": 6912,
                        "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
                        "head_dim": 256, "sliding_window": 512, "query_pre_attn_scalar": 256},
    "Phi3-0.4B shape": {"architectures": ["Phi3ForCausalLM"], "hidden_size": 1024, "intermediate_size": 4096,
                        "num_hidden_layers": 20, "num_attention_heads": 16, "num_key_value_heads": 16},
}


def family_model(cache: Path, label: str) -> Path:
    return random_model(cache, label.split()[0].lower(), FAMILY_SHAPES[label])


def llama_bench(bin_dir: Path, model: Path, threads: int) -> dict[str, float]:
    out = sh([str(bin_dir / "llama-bench"), "-m", str(model), "-p", "200", "-n", "128", "-t", str(threads),
              "-r", "3", "-o", "json"])
    res = {}
    for row in json.loads(out):
        key = "prefill" if row.get("n_prompt", 0) > 0 else "decode"
        res[key] = float(row["avg_ts"])
    return res


def ours(model_path: Path) -> dict[str, float]:
    """Batch-1 decode and prefill through the engine `aigc serve` runs (no HTTP). Speculative decoding
    is off here (AIGC_SPECULATION=0, set in main): llama-bench measures plain decoding."""
    lm = load_model(str(model_path), quantize="auto")
    result = {"weight_bytes": weight_bytes(lm.model)}
    engine = Engine(lm.model, lm.tokenizer, lm.name, max_concurrency=1, max_context=4096)
    engine.start()
    try:
        greedy = SamplingParams(max_tokens=128, temperature=0.0, ignore_eos=True)
        list(engine.submit(EngineRequest(list(range(100, 132)), SamplingParams(max_tokens=8, temperature=0.0))))
        decode, prefill = [], []
        for rep in range(3):
            s = engine.submit(EngineRequest(list(range(1000 + 40 * rep, 1032 + 40 * rep)), greedy))
            list(s)
            m = s.metrics
            decode.append((m.completion_tokens - 1) / (m.total_s - m.time_to_first_token_s))
            prompt = [(7919 * (i + 1) + 104729 * rep) % 40000 + 500 for i in range(200)]
            s = engine.submit(EngineRequest(prompt, SamplingParams(max_tokens=1, temperature=0.0)))
            list(s)
            prefill.append(200 / s.metrics.time_to_first_token_s)
    finally:
        engine.stop()
    result["decode"] = sorted(decode)[1]
    result["prefill"] = sorted(prefill)[1]
    return result


def read_bandwidth_gbs() -> float:
    x = torch.ones(256 * 1024 * 1024 // 4 * 4)  # 1 GiB of float32
    x.sum()
    t = time.perf_counter()
    for _ in range(3):
        x.sum()
    return 3 * x.numel() * 4 / (time.perf_counter() - t) / 1e9


def rss_llama_server(bin_dir: Path, model: Path, threads: int) -> float | None:
    port = "18187"
    proc = subprocess.Popen([str(bin_dir / "llama-server"), "-m", str(model), "-np", "16", "-c", "65536", "-t",
                             str(threads), "--port", port, "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(120):
            time.sleep(0.5)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "Hello", "max_tokens": 16}, timeout=60)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")) / 1e6
    finally:
        proc.terminate()
        proc.wait(10)


def rss_ours(model: Path) -> float:
    """RSS (GB) of a fresh process holding the engine with 16 slots x 4096 context after one request."""
    code = f"""
from aigc.engine import Engine, EngineRequest
from aigc.generation.params import SamplingParams
from aigc.models.loader import load_model
lm = load_model({str(model)!r}, quantize="auto")
e = Engine(lm.model, lm.tokenizer, lm.name, max_concurrency=16, max_context=4096)
e.start()
list(e.submit(EngineRequest(list(range(100, 300)), SamplingParams(max_tokens=16, temperature=0.0))))
status = open("/proc/self/status").read()
print(next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS")))
e.stop()
"""
    return int(sh([sys.executable, "-c", code]).strip().splitlines()[-1]) / 1e6


# ---- servers: the official openai async client, streaming -------------------------------------------

def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready")


def _prompt(i: int, n_tokens: int = 200) -> str:
    words = ["river", "stone", "lantern", "harbor", "meadow", "copper", "violet", "orchard", "thunder", "silk"]
    return f"Story {i}: " + " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(n_tokens - 4))


async def _drive(base_url: str, model: str, clients: int, new_tokens: int, round_: int) -> dict[str, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    ttft: list[float] = []
    counts: list[int] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        first, n = None, 0
        stream = await client.completions.create(
            model=model, prompt=_prompt(1000 * round_ + i), max_tokens=new_tokens, temperature=0.7, stream=True,
            extra_body={"ignore_eos": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
        ttft.append(first or float("nan"))
        counts.append(n)

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    wall = time.perf_counter() - t
    await client.close()
    ttft.sort()
    return {"tok_s": sum(counts) / wall, "ttft_p50": ttft[len(ttft) // 2], "ttft_p99": ttft[-1]}


def servers(bin_dir: Path, model: Path, threads: int, levels=(1, 4, 16), new_tokens: int = 128) -> None:
    port_ours, port_theirs = "18201", "18202"
    ours_proc = subprocess.Popen([sys.executable, "-m", "aigc", "serve", "--model", str(model), "--port", port_ours,
                                  "--max-concurrency", "16", "--max-context", "4096", "--max-queue", "64"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "AIGC_DATABASE_URL": "sqlite:///:memory:"})
    theirs_proc = subprocess.Popen([str(bin_dir / "llama-server"), "-m", str(model), "-np", "16", "-c", "65536",
                                    "-t", str(threads), "--port", port_theirs, "--host", "127.0.0.1"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port_ours}/health", ours_proc)
        _wait_http(f"http://127.0.0.1:{port_theirs}/health", theirs_proc)
        model_id = sh([sys.executable, "-c", f"import httpx; print(httpx.get('http://127.0.0.1:{port_ours}/v1/models')"
                       ".json()['data'][0]['id'])"]).strip()
        print(f"\nServers on {model.name}: ours `aigc serve --max-concurrency 16 --max-context 4096`, "
              f"llama-server -np 16 -c 65536; {new_tokens} new tokens, ~200-token prompts, streaming")
        print("| clients | ours tok/s | llama-server tok/s | ratio | TTFT p50 ours | TTFT p50 llama | TTFT p99 ours | TTFT p99 llama |")
        print("|---|---|---|---|---|---|---|---|")
        for rnd, n in enumerate(levels):
            # servers one at a time (they share the 2 cores); stop the idle one's spinning by not calling it
            a = asyncio.run(_drive(f"http://127.0.0.1:{port_ours}/v1", model_id, n, new_tokens, rnd))
            b = asyncio.run(_drive(f"http://127.0.0.1:{port_theirs}/v1", "x", n, new_tokens, rnd))
            print(f"| {n} | {a['tok_s']:.1f} | {b['tok_s']:.1f} | {a['tok_s'] / b['tok_s']:.2f}x "
                  f"| {a['ttft_p50'] * 1e3:.0f} ms | {b['ttft_p50'] * 1e3:.0f} ms "
                  f"| {a['ttft_p99'] * 1e3:.0f} ms | {b['ttft_p99'] * 1e3:.0f} ms |", flush=True)
    finally:
        for p in (ours_proc, theirs_proc):
            p.terminate()
            p.wait(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "aigc-bench")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--skip-big", action="store_true", help="skip the 0.5B model")
    ap.add_argument("--skip-rss", action="store_true")

    ap.add_argument("--skip-files", action="store_true", help="skip the per-file decode/prefill table")
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--families", action="store_true",
                    help="also Qwen3-, Gemma3- and Phi3-shaped files (random weights) in Q8_0 and Q4_K_M")
    ap.add_argument("--only-families", action="store_true", help="the --families files alone")
    args = ap.parse_args()
    os.environ["AIGC_SPECULATION"] = "0"  # plain decoding on both sides (the servers inherit it too)
    kernels.set_num_threads(args.threads)
    bin_dir = build_llamacpp(args.cache)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    bw = read_bandwidth_gbs()
    print(f"CPU: {cpu} · kernels: {kernels.isa()} · {args.threads} threads · read bandwidth {bw:.1f} GB/s")
    bundled = Path(bundled_path("smollm2-135m-instruct"))
    files = {"SmolLM2-135M Q4_1 (bundled)": bundled,
             "SmolLM2-135M Q8_0": quantized_copy(bin_dir, bundled, args.cache / "smollm2-Q8_0.gguf", "Q8_0"),
             "SmolLM2-135M F16": quantized_copy(bin_dir, bundled, args.cache / "smollm2-F16.gguf", "F16")}
    if not args.skip_big:
        big = big_model(args.cache)
        files["Llama-0.49B Q8_0"] = quantized_copy(bin_dir, big, args.cache / "llama-0.5b-Q8_0.gguf", "Q8_0")
        files["Llama-0.49B Q4_K_M"] = quantized_copy(bin_dir, big, args.cache / "llama-0.5b-Q4_K_M.gguf", "Q4_K_M")
    if not args.skip_server:
        servers(bin_dir, files["SmolLM2-135M Q8_0"], args.threads)
    if args.skip_files:
        files = {}
    if args.only_families:
        files, args.families = {}, True
    if args.families:
        for label in FAMILY_SHAPES:
            src = family_model(args.cache, label)
            for kind in ("Q8_0", "Q4_K_M"):
                files[f"{label} {kind}"] = quantized_copy(bin_dir, src, src.with_name(src.name.replace("F16", kind)),
                                                          kind)
    print("| file | decode ours | decode llama.cpp | ratio | of roofline | prefill ours | prefill llama.cpp | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, path in files.items():
        theirs = llama_bench(bin_dir, path, args.threads)
        mine = ours(path)
        roof = bw * 1e9 / mine["weight_bytes"]
        print(f"| {name} | {mine['decode']:.1f} | {theirs['decode']:.1f} | {mine['decode'] / theirs['decode']:.2f}x "
              f"| {mine['decode'] / roof:.0%} | {mine['prefill']:.0f} | {theirs['prefill']:.0f} "
              f"| {mine['prefill'] / theirs['prefill']:.2f}x |", flush=True)
    if not args.skip_rss:
        q8 = files["SmolLM2-135M Q8_0"]
        theirs_rss, mine_rss = rss_llama_server(bin_dir, q8, args.threads), rss_ours(q8)
        print(f"RSS, 16 slots x 4096 context, SmolLM2 Q8_0: ours {mine_rss:.2f} GB, llama-server {theirs_rss:.2f} GB "
              f"({mine_rss / theirs_rss:.2f}x)")
    print(f"max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
