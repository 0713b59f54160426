"""Model files that cannot load: one line on stderr and exit code 2, from `aigc generate` and from
`aigc serve` before it starts listening (never a traceback, never a server that cannot answer)."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from aigc.cli.main import main
from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import write_gguf
from aigc.models.hf_checkpoint import native_to_hf
from aigc.models.transformer import Transformer

TOKENS = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": [f"t{i}" for i in range(64)],
          "tokenizer.ggml.token_type": [1] * 64, "tokenizer.ggml.merges": ["t 1"]}


def _tiny_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.init_weights()
    return native_to_hf(cfg, model.state_dict())


@pytest.fixture()
def bad_files(tmp_path):
    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=2)
    good = tmp_path / "good.gguf"
    write_gguf(good, cfg, _tiny_state(cfg), TOKENS)
    files = {}
    falcon = tmp_path / "falcon.gguf"
    writer = gguf.GGUFWriter(str(falcon), "falcon")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    files["falcon"] = (falcon, "unsupported GGUF architecture 'falcon' (supported: llama, qwen2")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    files["corrupt"] = (corrupt, "corrupt GGUF header")
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(good.read_bytes()[:-4000])
    files["truncated"] = (trunc, "truncated download")
    notok = tmp_path / "notok.gguf"
    write_gguf(notok, cfg, _tiny_state(cfg))
    files["no tokenizer"] = (notok, "no tokenizer")
    return files


@pytest.mark.parametrize("case", ["falcon", "corrupt", "truncated", "no tokenizer"])
@pytest.mark.parametrize("command", ["generate", "serve"])
def test_one_line_and_exit_2(bad_files, capsys, case, command):
    path, message = bad_files[case]
    argv = ["generate", "--model", str(path), "-p", "hi", "--max-tokens", "2"] if command == "generate" \
        else ["serve", "--model", str(path), "--port", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
