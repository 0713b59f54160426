"""The `aigc` command as a user runs it: real processes, the bundled model, exit codes."""

import json
import subprocess
import sys

import pytest
import torch

from aigc.cli import main

AIGC = [sys.executable, "-m", "aigc"]


def run_cli(*args: str, stdin: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*AIGC, *args], input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_generate_chat_answers_paris():
    r = run_cli("generate", "--model", "smollm2-135m-instruct", "--chat",
                "What is the capital of France?", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert r.stderr == ""  # only the generated text is printed, on stdout


@pytest.mark.slow
def test_generate_seed_n_stop_and_json():
    args = ["generate", "--chat", "Tell me a story about a cat.", "--temperature", "1.0", "--seed", "7",
            "--max-tokens", "12", "--n", "2", "--json"]
    a, b = run_cli(*args), run_cli(*args)
    assert a.returncode == 0, a.stderr
    first, again = json.loads(a.stdout), json.loads(b.stdout)
    assert first == again  # seeded sampling is reproducible across processes
    assert len(first) == 2 and first[0]["token_ids"] != first[1]["token_ids"]
    stop = run_cli("generate", "--chat", "Count from 1 to 10 separated by commas.", "--temperature", "0",
                   "--max-tokens", "40", "--stop", "5", "--json")
    out = json.loads(stop.stdout)[0]
    assert out["finish_reason"] == "stop" and "5" not in out["text"] and "4" in out["text"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--chat", "hi", "--temperature", "-1"], "temperature"),
        (["generate", "--chat", "hi", "--top-p", "0"], "top_p"),
        (["generate", "--chat", "hi", "--top-p", "1.5"], "top_p"),
        (["generate", "--chat", "hi", "--max-tokens", "0"], "max_tokens"),
        (["generate", "--chat", "hi", "--model", "no-such-model"], "unknown model"),
        (["generate", "--chat", "hi", "--model", "/no/such/dir"], "/no/such/dir"),
        (["generate", "--chat", "hi", "--model", "Qwen/Qwen2.5-0.5B-Instruct"], "local path"),
        (["convert", "/no/such.gguf", "/tmp/aigc-never-written"], "/no/such.gguf"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_prompt_longer_than_context_is_a_clear_error():
    r = run_cli("generate", "--prompt", "hello " * 9000, "--max-tokens", "5")
    assert r.returncode == 2
    assert "context window" in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_exit_2():
    r = run_cli("generate")  # neither --prompt nor --chat
    assert r.returncode == 2 and "--prompt" in r.stderr


@pytest.mark.slow
def test_convert_gguf_writes_a_dir_transformers_opens(tmp_path):
    import transformers

    from aigc.models.loader import load_model

    out = tmp_path / "smollm2"
    r = run_cli("convert", "smollm2-135m-instruct", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).exists()
    assert "chat_template" in json.loads((out / "tokenizer_config.json").read_text())
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours = load_model(str(out))
    ids = torch.tensor([ours.tokenizer.encode("The capital of France is")])
    with torch.no_grad():
        assert (hf(ids).logits - ours.model(ids)).abs().max() < 1e-3
    again = run_cli("convert", "smollm2-135m-instruct", str(out))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_convert_writes_a_quantized_gguf_that_loads_with_its_tokenizer(tmp_path):
    """HF directory -> Q8_0 GGUF (tokenizer and chat template inside): same ids, same greedy answer."""
    import gguf

    from aigc.models.loader import load_model
    from aigc.models.quantized import QuantizedLinear

    out = tmp_path / "poet-q8.gguf"
    r = run_cli("convert", "models/aigc-poet-zh", str(out), "--quant", "q8_0")
    assert r.returncode == 0, r.stderr
    reader = gguf.GGUFReader(out)
    types = {t.tensor_type.name for t in reader.tensors}
    assert "Q8_0" in types and types <= {"Q8_0", "F32"}
    src, packed = load_model("models/aigc-poet-zh"), load_model(str(out), quantize="auto")
    assert all(m.formats == ["Q8_0"] * len(m.formats) for m in packed.model.modules() if isinstance(m, QuantizedLinear))
    text = "春眠不觉晓，处处闻啼鸟。"
    assert packed.tokenizer.encode(text) == src.tokenizer.encode(text)
    messages = [{"role": "user", "content": "春天"}]
    assert packed.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True) == \
        src.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    a = run_cli("generate", "-m", str(out), "--chat", "春天", "-t", "0", "--max-tokens", "24")
    b = run_cli("generate", "-m", "models/aigc-poet-zh", "--quantize", "q8_0", "--chat", "春天", "-t", "0",
                "--max-tokens", "24")
    assert a.returncode == 0 and a.stdout.strip() and a.stdout == b.stdout
    again = run_cli("convert", "models/aigc-poet-zh", str(out), "--quant", "q4_k")
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow
def test_chat_repl_multi_turn_reset_and_dropping():
    script = "My name is Ada.\n/system You are a terse assistant.\nWhat is 2+2?\n/reset\n/bogus\n/exit\n"
    r = run_cli("chat", "--temperature", "0", "--max-tokens", "24", stdin=script)
    assert r.returncode == 0, r.stderr
    assert "[conversation reset]" in r.stderr and "[system prompt set]" in r.stderr
    assert "unknown command /bogus" in r.stderr
    assert "4" in r.stdout
    # A tiny window forces the oldest turns out, and the user is told.
    long_turns = "".join(f"Please remember the number {i} and tell me a fact about it.\n" for i in range(6))
    r = run_cli("chat", "--temperature", "0", "--max-tokens", "16", "--max-context", "120",
                "--system", "Be brief.", stdin=long_turns)
    assert r.returncode == 0, r.stderr
    assert "dropped" in r.stderr and "system prompt is kept" in r.stderr
