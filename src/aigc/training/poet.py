"""Corpus and instruction pairs for `aigc-poet-zh`, our own Chinese poetry model.

From the chinese-poetry records (Traditional characters for Tang/Song shi) we build, in Simplified:
- `poems_train.jsonl` / `poems_heldout.jsonl`: poem records, split by a stable hash so a held-out
  poem is never seen in pretraining or instruction tuning;
- `sft_train.jsonl`: chat records that teach the instructions users type, built from the poems'
  own titles, forms and lines: 写一首五言绝句，题目：… / 写一首七言律诗，主题：… / 填一首词，词牌：… /
  续写：<first line>.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aigc.eval.poems import form_of, split_lines

POEM_FILES = ("tang-shi", "song-shi", "song-ci", "yuan-qu", "shijing", "chuci")


@dataclass
class Poem:
    title: str
    author: str
    kind: str  # shi | ci | qu | shijing | chuci
    lines: list[str]  # the record's paragraphs (usually one couplet each), Simplified

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def form(self) -> str | None:
        return form_of(self.text) if self.kind == "shi" else None

    def key(self) -> str:
        return f"{self.title}|{self.author}|{self.lines[0] if self.lines else ''}"

    def record(self) -> dict:
        return {"title": self.title, "author": self.author, "form": self.kind, "paragraphs": self.lines}


def _clean_title(title: str) -> str:
    return title.strip().replace(" ", "")


def read_poems(data_dir: Path, *, max_per_file: dict[str, int] | None = None, seed: int = 0) -> Iterator[Poem]:
    """Every poem of the shared poetry data, converted to Simplified characters."""
    import opencc

    cc = opencc.OpenCC("t2s")
    poetry = data_dir / "zh-poetry"
    if not poetry.is_dir():
        raise FileNotFoundError(f"{poetry} not found; pass --data pointing at the folder that holds zh-poetry/")
    for name in POEM_FILES:
        path = poetry / f"{name}.jsonl.gz"
        if not path.exists():
            continue
        with gzip.open(path, "rt", encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        cap = (max_per_file or {}).get(name)
        if cap is not None and len(records) > cap:
            records = random.Random(seed).sample(records, cap)
        for r in records:
            lines = [cc.convert(str(p).strip()) for p in r.get("paragraphs") or [] if str(p).strip()]
            if not lines:
                continue
            yield Poem(_clean_title(cc.convert(str(r.get("title") or ""))), cc.convert(str(r.get("author") or "")),
                       str(r.get("form") or "shi"), lines)


def is_heldout(poem: Poem, per_mille: int) -> bool:
    digest = hashlib.sha1(poem.key().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < per_mille


def _good_title(title: str) -> bool:
    return 0 < len(title) <= 12 and all("\u3400" <= ch <= "\u9fff" for ch in title)


def instruction_pairs(poem: Poem, rng: random.Random) -> list[tuple[str, str]]:
    """(user prompt, poem text) pairs a poem teaches."""
    pairs: list[tuple[str, str]] = []
    form = poem.form
    if form and _good_title(poem.title):
        word = "题目" if rng.random() < 0.6 else "主题"
        pairs.append((f"写一首{form}，{word}：{poem.title}", poem.text))
        if form == "五言绝句":  # the rarest form in the data: show it twice, the other way of asking
            pairs.append((f"写一首{form}，{'主题' if word == '题目' else '题目'}：{poem.title}", poem.text))
    elif poem.kind == "ci" and _good_title(poem.title):
        pairs.append((f"填一首词，词牌：{poem.title}", poem.text))
    elif poem.kind == "shi" and _good_title(poem.title) and len(poem.text) <= 200 and rng.random() < 0.25:
        pairs.append((f"写一首诗，题目：{poem.title}", poem.text))
    lines = split_lines(poem.text)
    if poem.kind == "shi" and form and rng.random() < 0.4:
        pairs.append((f"续写：{lines[0]}", poem.text))
    return pairs


def build_corpus(data_dir: str | Path, out_dir: str | Path, *, heldout_per_mille: int = 20, seed: int = 1234,
                 max_per_file: dict[str, int] | None = None, max_sft_pairs: int | None = None) -> dict:
    """Write the poem splits and instruction pairs; returns (and writes) a summary."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    forms: Counter[str] = Counter()
    sft: list[dict] = []
    tmp = {n: out_dir / f"{n}.jsonl.tmp" for n in ("poems_train", "poems_heldout", "sft_train")}
    with open(tmp["poems_train"], "w", encoding="utf-8") as train, \
            open(tmp["poems_heldout"], "w", encoding="utf-8") as heldout:
        for poem in read_poems(data_dir, max_per_file=max_per_file, seed=seed):
            form = poem.form
            record = poem.record() | {"shape": form}
            if is_heldout(poem, heldout_per_mille):
                heldout.write(json.dumps(record, ensure_ascii=False) + "\n")
                counts["heldout"] += 1
                continue
            train.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts["train"] += 1
            forms[form or poem.kind] += 1
            for prompt, answer in instruction_pairs(poem, rng):
                sft.append({"messages": [{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": answer}]})
    rng.shuffle(sft)
    sft = sft[:max_sft_pairs] if max_sft_pairs else sft
    with open(tmp["sft_train"], "w", encoding="utf-8") as f:
        for rec in sft:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    for name, path in tmp.items():
        path.replace(out_dir / f"{name}.jsonl")
    summary = {"poems_train": counts["train"], "poems_heldout": counts["heldout"], "sft_pairs": len(sft),
               "forms": dict(forms.most_common())}
    (out_dir / "corpus.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    return summary
