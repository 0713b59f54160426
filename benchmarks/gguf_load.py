"""Loading GGUF files: time and resident memory, ours against llama.cpp's server on the same files.

    python benchmarks/gguf_load.py [--cache ~/.cache/aigc-bench] [--threads 2]

Files: a ~0.4B Qwen2-shape model with random weights (hidden 896, 24 layers, 14 heads / 2 kv heads,
q/k/v biases, the SmolLM2 tokenizer) written by our GGUF writer as Q4_K_M and Q8_0, and the
~0.49B Llama-shape files `vs_llamacpp.py` makes (if present). Each figure is taken in a fresh
process:

- ours: `load_model(path, quantize="auto")` (the product path: blocks kept as stored, memory-mapped)
  timed from the call to a first forward, RSS (and the file-backed part of it) after that forward;
- llama.cpp: `llama-server -c 512 -np 1` timed from start to /health = 200, RSS then. The server's
  time includes its process start; ours does not include Python's imports (printed apart).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx
from vs_llamacpp import random_model  # benchmarks/ is the script's folder, so on sys.path

QWEN_SHAPE = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
              "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
              "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": True}


OURS = """
import json, time, sys
t0 = time.perf_counter()
import torch
from aigc.models.loader import load_model
t_import = time.perf_counter() - t0

def status():
    lines = open("/proc/self/status").read().splitlines()
    return {l.split(":")[0]: int(l.split()[1]) for l in lines if l.startswith(("VmRSS", "RssFile", "RssAnon"))}

before = status()
t1 = time.perf_counter()
lm = load_model(sys.argv[1], quantize="auto")
with torch.inference_mode():
    lm.model(torch.tensor([[1, 2, 3]]))
t_load = time.perf_counter() - t1
print(json.dumps({"import_s": t_import, "load_s": t_load, "before": before, "after": status()}))
"""


def ours(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", OURS, str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def llama_server(bin_dir: Path, path: Path, threads: int) -> dict | None:
    exe = bin_dir / "llama-server"
    if not exe.exists():
        return None
    port = "18191"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "-m", str(path), "-c", "512", "-np", "1", "-t", str(threads), "--port", port,
                             "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < 300:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        ready = time.perf_counter() - t0
        lines = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        rss = {line.split(":")[0]: int(line.split()[1]) for line in lines if line.startswith(("VmRSS", "RssFile"))}
        return {"ready_s": ready, "rss": rss}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "aigc-bench")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}")
    files = [random_model(args.cache, "qwen2-0.4b", QWEN_SHAPE, quant) for quant in ("Q4_K_M", "Q8_0")]
    files += [p for p in (args.cache / "llama-0.5b-Q4_K_M.gguf", args.cache / "llama-0.5b-Q8_0.gguf") if p.exists()]
    bin_dir = next(args.cache.glob("llama_cpp_python-*/vendor/llama.cpp/build/bin"), Path("/nonexistent"))
    for path in files:
        size_mb = path.stat().st_size / 1e6
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm page cache for both
        mine = ours(path)
        rss_mb, file_mb = mine["after"]["VmRSS"] / 1e3, mine["after"]["RssFile"] / 1e3
        base_mb = mine["before"]["VmRSS"] / 1e3
        print(f"{path.name} ({size_mb:.0f} MB): ours load {mine['load_s']:.2f} s (+{mine['import_s']:.1f} s "
              f"imports), RSS {rss_mb:.0f} MB = {rss_mb / size_mb:.2f}x file ({file_mb:.0f} MB file-backed); "
              f"loading added {rss_mb - base_mb:.0f} MB = {(rss_mb - base_mb) / size_mb:.2f}x file to the "
              f"{base_mb:.0f} MB of Python + torch")
        theirs = llama_server(bin_dir, path, args.threads)
        if theirs:
            t_rss = theirs["rss"]["VmRSS"] / 1e3
            print(f"    llama-server ready {theirs['ready_s']:.2f} s, RSS {t_rss:.0f} MB = {t_rss / size_mb:.2f}x "
                  f"file; load time ratio ours/theirs {mine['load_s'] / theirs['ready_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
