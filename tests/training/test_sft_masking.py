"""SFT labels: exactly the assistant replies (content + end-of-turn token) are trained."""

import pytest
from finetune_harness import LLAMA3_TEMPLATE, QWEN_TEMPLATE, SMOLLM2_TEMPLATE, byte_tokenizer

from aigc.chat_template import TemplateError
from aigc.training.sft import IGNORE, build_example

CHAT = [
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello, how can I help?"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


def labelled_runs(tok, ex):
    """Decoded text of each maximal run of trained tokens."""
    runs, cur = [], []
    for i, lab in zip(ex.input_ids, ex.labels, strict=True):
        if lab != IGNORE:
            assert lab == i  # labels are the ids themselves (shifting happens in the loss)
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


@pytest.mark.parametrize(("template", "eos", "bos", "end"), [
    (SMOLLM2_TEMPLATE, "<|im_end|>", None, "<|im_end|>"),
    (QWEN_TEMPLATE, "<|im_end|>", None, "<|im_end|>"),
    (LLAMA3_TEMPLATE, "<|eot_id|>", "<|begin_of_text|>", "<|eot_id|>"),
], ids=["smollm2", "qwen", "llama3"])
def test_only_assistant_tokens_are_labelled(template, eos, bos, end):
    tok = byte_tokenizer(template, eos=eos, bos=bos)
    ex = build_example(tok, CHAT)
    # Same ids the server would feed the model for this conversation.
    assert ex.input_ids == tok.apply_chat_template(CHAT, add_generation_prompt=False, tokenize=True)
    assert labelled_runs(tok, ex) == ["Hello, how can I help?" + end, "4" + end]
    # One token per byte here, so the count is exact: content bytes + one end token per reply.
    assert ex.num_trained == len("Hello, how can I help?") + 1 + 1 + 1
    # The newline after <|im_end|> and the next turn's header are prompt, not target.
    text = tok.decode(ex.input_ids)
    assert text.endswith("4" + end + ("\n" if end == "<|im_end|>" else ""))


def test_system_prompt_and_user_text_never_trained():
    tok = byte_tokenizer()
    chat = [{"role": "system", "content": "Be brief."}, *CHAT[:2]]
    ex = build_example(tok, chat)
    assert labelled_runs(tok, ex) == ["Hello, how can I help?<|im_end|>"]
    trained = tok.decode([i for i, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE])
    assert "Be brief" not in trained and "Hi!" not in trained and "assistant" not in trained


def test_truncation_keeps_the_start():
    tok = byte_tokenizer()
    full = build_example(tok, CHAT)
    cut = build_example(tok, CHAT, max_length=len(full.input_ids) - 5)
    assert cut.input_ids == full.input_ids[:-5] and cut.labels == full.labels[:-5]


def test_history_rewriting_template_is_refused():
    # A template that hides earlier assistant turns: the reply cannot be located by prefix rendering.
    hiding = ("{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
              "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(TemplateError, match="cannot be located"):
        build_example(byte_tokenizer(hiding), CHAT)
    with pytest.raises(TemplateError, match="starts with an assistant"):
        build_example(byte_tokenizer(), [{"role": "assistant", "content": "x"}])


@pytest.mark.slow
def test_smollm2_real_tokenizer_labels():
    from aigc.models.registry import bundled_path
    from aigc.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(bundled_path("smollm2-135m-instruct"))
    ex = build_example(tok, CHAT)
    assert ex.input_ids == tok.apply_chat_template(CHAT, add_generation_prompt=False, tokenize=True)
    assert labelled_runs(tok, ex) == ["Hello, how can I help?<|im_end|>", "4<|im_end|>"]
