"""`aigc generate` and `aigc serve` run one engine: seeded samples agree between the two."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from conftest import REAL

PROMPT = "Tell me a story about a cat."


@pytest.mark.slow
def test_generate_n2_seed1_equals_the_server(real_server):
    cli = subprocess.run([sys.executable, "-m", "aigc", "generate", "--model", REAL, "--chat", PROMPT, "--n", "2",
                          "--seed", "1", "--temperature", "1.0", "--max-tokens", "16", "--json"],
                         capture_output=True, text=True, timeout=240)
    assert cli.returncode == 0, cli.stderr
    cli_texts = [c["text"] for c in json.loads(cli.stdout)]
    client = openai.OpenAI(base_url=real_server.url + "/v1", api_key="none")
    resp = client.chat.completions.create(model=REAL, messages=[{"role": "user", "content": PROMPT}], n=2, seed=1,
                                          temperature=1.0, max_tokens=16)
    server_texts = [c.message.content for c in sorted(resp.choices, key=lambda c: c.index)]
    assert cli_texts == server_texts
    assert cli_texts[0] != cli_texts[1]  # the two samples have their own seeds
