"""Embedding models in the sentence-transformers layout, built here (a tiny random BERT), served by
/v1/embeddings and checked against transformers' own forward with sentence-transformers' pooling."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import openai
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from aigc.models.sentence_encoder import SentenceEncoder, is_encoder_dir

WORDS = ["hello", "world", "return", "policy", "退", "货", "政", "策", "the", "a", "of", "shop"]


def make_encoder(folder: Path, pooling: str = "mean") -> Path:
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
         "pooling_mode_mean_tokens": pooling == "mean"}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    return folder


def reference(folder: Path, text: str, pooling: str) -> np.ndarray:
    """transformers' forward plus sentence-transformers' pooling and normalisation, written out."""
    from transformers import BertModel

    model = BertModel.from_pretrained(folder).eval()
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    v = h[0] if pooling == "cls" else h.mean(dim=0)
    return (v / v.norm()).numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_vectors_match_the_reference_and_do_not_depend_on_the_batch(tmp_path, pooling):
    folder = make_encoder(tmp_path / "enc", pooling)
    assert is_encoder_dir(folder)
    enc = SentenceEncoder.load(folder)
    assert (enc.pooling, enc.max_length, enc.dimensions) == (pooling, 16, 32)
    short, long = "hello world", "the return policy of the shop 退货政策"
    alone = enc.embed([enc.encode(short)])[0]
    np.testing.assert_allclose(alone, reference(folder, short, pooling), atol=1e-5)
    batched = enc.embed([enc.encode(long), enc.encode(short)])  # padded next to a longer input
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)
    np.testing.assert_allclose(batched[0], reference(folder, long, pooling), atol=1e-5)
    cut = enc.embed([enc.encode(short)], dimensions=8)[0]
    assert cut.shape == (8,) and abs(float(np.linalg.norm(cut)) - 1) < 1e-5


def test_decoders_and_classifiers_are_not_encoders(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    assert not is_encoder_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert",
                                                      "architectures": ["BertForSequenceClassification"]}))
    assert not is_encoder_dir(tmp_path)


def test_served_by_v1_embeddings_and_refused_for_chat(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "server"))
    from server_harness import ServerThread

    from aigc.server.app import create_app
    from aigc.settings import Settings

    folder = make_encoder(tmp_path / "minilm")
    app = create_app(Settings(models=[str(folder)]))
    server = ServerThread(app).start()
    try:
        assert app.state.backends.wait_loaded(120) and not app.state.backends.failed
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        model = str(folder)
        listed = {m.id: m.owned_by for m in client.models.list()}
        assert listed[model] == "aigc-embedding"
        assert listed["multilingual-e5-small"] == "aigc-embedding"  # the knowledge bases' embedder, served too
        e5 = client.embeddings.create(model="multilingual-e5-small", input=["退货政策", "return policy"],
                                      encoding_format="float")
        from aigc.knowledge.embedder import default_embedder

        np.testing.assert_allclose(e5.data[0].embedding, default_embedder().passages(["退货政策"])[0], atol=1e-6)
        query = client.embeddings.create(model="multilingual-e5-small", input="退货政策", encoding_format="float",
                                         extra_body={"input_type": "query"})
        np.testing.assert_allclose(query.data[0].embedding, default_embedder().query("退货政策"), atol=1e-6)
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="multilingual-e5-small", input=[[1, 2, 3]])
        out = client.embeddings.create(model=model, input=["hello world", "退货政策"])  # base64 by default
        assert [len(d.embedding) for d in out.data] == [32, 32] and out.usage.prompt_tokens == 4 + 6
        np.testing.assert_allclose(out.data[0].embedding, reference(folder, "hello world", "mean"), atol=1e-5)
        floats = client.embeddings.create(model=model, input="hello world", encoding_format="float",
                                          dimensions=4)
        assert len(floats.data[0].embedding) == 4
        raw = client.with_raw_response.embeddings.create(model=model, input="hello", encoding_format="base64")
        vec = np.frombuffer(base64.b64decode(json.loads(raw.text)["data"][0]["embedding"]), dtype=np.float32)
        assert vec.shape == (32,)
        with pytest.raises(openai.BadRequestError) as e:
            client.embeddings.create(model=model, input=" ".join(["hello"] * 40))  # over max_seq_length 16
        assert e.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert e.value.param == "model" and "/v1/embeddings" in e.value.message
    finally:
        server.stop()
