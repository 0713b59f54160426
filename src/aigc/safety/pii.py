"""Personal data in text: find it, replace it with placeholders, put it back.

Entities and how each is recognised (a candidate must pass its check, not just look right):

- `email`      addresses (RFC-ish local part, a dotted domain with a letter TLD)
- `phone`      Chinese mobiles (1[3-9] + 9 digits, optional +86/0086, spaces or dashes), Chinese
               landlines (0 + 2-3 digit area code + 7-8 digits), international E.164 numbers
               (+ country code, 7-15 digits in all, grouping allowed)
- `cn_id`      Chinese resident ID numbers: 18 characters, a real birth date, and the ISO 7064
               MOD 11-2 check character (a wrong checksum is not an ID)
- `bank_card`  13-19 digit card numbers (grouped or not) that pass the Luhn check
- `ip`         IPv4 (each part <= 255) and IPv6 addresses (validated by `ipaddress`)
- `person`     Chinese personal names, by jieba's part-of-speech tagger (`nr`); English names
               after a title (Mr/Ms/Mrs/Dr) -- names are guesses, so they can be turned off
- `address`    Chinese street addresses (... 路/街/道/巷/弄 + 号, with the city and district before
               them) and English ones (number + street name + Street/Road/Avenue/...)

Why not Presidio: its recognisers for names and addresses need a spaCy model downloaded at run
time (impossible offline), it has no Chinese recognisers at all, and its phone and ID patterns do
not know Chinese numbers; the checks above are what it would run, in both languages.

`redact` gives each distinct value one placeholder ("[PHONE_1]"), so a model that sees the
redacted text can still refer to "the same number", and `restore` puts the values back into its
reply.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import date

KINDS = ("email", "phone", "cn_id", "bank_card", "ip", "person", "address")
GUESSED = ("person", "address")  # found by heuristics, not checked: may be turned off
_PRIORITY = {k: i for i, k in enumerate(("cn_id", "bank_card", "email", "ip", "phone", "address", "person"))}


@dataclass(frozen=True)
class Entity:
    kind: str
    start: int
    end: int
    text: str

    def to_dict(self) -> dict[str, object]:
        return {"type": self.kind, "start": self.start, "end": self.end, "text": self.text}


# ---------------------------------------------------------------------------- checks


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_cn_id(text: str) -> bool:
    """An 18-character Chinese resident ID: region, a real birth date, and its check character."""
    s = text.upper()
    if not re.fullmatch(r"[1-8]\d{16}[\dX]", s):
        return False
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= date.today().year:
        return False
    total = sum(int(d) * w for d, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == s[17]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def valid_bank_card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return digits.isdigit() and 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------- patterns


_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])")
_CN_ID = re.compile(r"(?<![0-9A-Za-z])[1-8]\d{16}[\dXx](?![0-9A-Za-z])")
_CARD = re.compile(r"(?<![\d-])(?:\d{4}[ -]){2,3}\d{4}(?:[ -]?\d{1,3})?(?![\d-])|(?<![\d-])\d{13,19}(?![\d-])")
_CN_MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_CN_LANDLINE = re.compile(r"(?<![\d+])(?:\(0\d{2,3}\)|0\d{2,3})[ -]?\d{7,8}(?!\d)")
_E164 = re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?:[ -]?\(?\d{1,4}\)?){2,5}(?![\d])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_EN_NAME = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.? ([A-Z][a-z]+(?: [A-Z][a-z]+){0,2})\b")
_CN_ADDRESS = re.compile(
    r"(?:[\u4e00-\u9fa5]{2,7}?(?:省|自治区|市|特别行政区)){0,2}(?:[\u4e00-\u9fa5]{1,7}?(?:市|区|县|镇|乡|街道))*"
    r"[\u4e00-\u9fa5\d]{1,12}?(?:路|街|大道|道|巷|弄|胡同)\d{1,5}(?:号|號)(?:院)?"
    r"(?:\d{1,4}(?:栋|幢|号楼|座))?(?:\d{1,3}单元)?(?:\d{1,5}(?:室|房|号))?")
_EN_ADDRESS = re.compile(r"\b\d{1,5} (?:[A-Z][a-z]+ ){1,3}(?:Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln"
                         r"|Drive|Dr|Way|Court|Ct|Place|Pl)\b(?:,? (?:Apt|Suite|Unit) ?\d+)?")
# Words before an address that the greedy city part would swallow ("住在上海市…").
_ADDRESS_LEAD = re.compile(r"^(?:我|他|她|我们|他们)?(?:家)?(?:现)?(?:住在|住址是|住址|地址是|地址|位于|寄到|送到|发到|搬到|在)")


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _candidates(text: str, kinds: set[str]) -> list[Entity]:
    found: list[Entity] = []

    def add(kind: str, m: re.Match[str], group: int = 0) -> None:
        found.append(Entity(kind, m.start(group), m.end(group), m.group(group)))

    if "email" in kinds:
        for m in _EMAIL.finditer(text):
            add("email", m)
    if "cn_id" in kinds:
        for m in _CN_ID.finditer(text):
            if valid_cn_id(m.group()):
                add("cn_id", m)
    if "bank_card" in kinds:
        for m in _CARD.finditer(text):
            if valid_bank_card(m.group()):
                add("bank_card", m)
    if "phone" in kinds:
        for pattern in (_CN_MOBILE, _CN_LANDLINE):
            for m in pattern.finditer(text):
                add("phone", m)
        for m in _E164.finditer(text):
            if 7 <= _digit_count(m.group()) <= 15:
                add("phone", m)
    if "ip" in kinds:
        for pattern in (_IPV4, _IPV6):
            for m in pattern.finditer(text):
                if valid_ip(m.group()) and (pattern is _IPV4 or m.group().count(":") >= 2):
                    add("ip", m)
    if "address" in kinds:
        for m in _CN_ADDRESS.finditer(text):
            lead = _ADDRESS_LEAD.match(m.group())
            skip = lead.end() if lead else 0
            found.append(Entity("address", m.start() + skip, m.end(), m.group()[skip:]))
        for m in _EN_ADDRESS.finditer(text):
            add("address", m)
    if "person" in kinds:
        for m in _EN_NAME.finditer(text):
            add("person", m, 1)
        found.extend(_chinese_names(text))
    return found


def _chinese_names(text: str) -> list[Entity]:
    if not re.search(r"[\u4e00-\u9fa5]", text):
        return []
    import jieba.posseg

    out, at = [], 0
    for piece in jieba.posseg.cut(text, HMM=True):
        start = text.find(piece.word, at)
        if start < 0:
            continue
        at = start + len(piece.word)
        if piece.flag in ("nr", "nrfg") and 2 <= len(piece.word) <= 4 and re.fullmatch(r"[\u4e00-\u9fa5·]+", piece.word):
            out.append(Entity("person", start, at, piece.word))
    return out


# ---------------------------------------------------------------------------- API


def find_pii(text: str, kinds: tuple[str, ...] | list[str] | None = None) -> list[Entity]:
    """The personal data in `text`, in order, without overlaps (a checked kind wins over a guess,
    then the longer match)."""
    wanted = set(KINDS if kinds is None else kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII type(s): {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    ranked = sorted(_candidates(text, wanted), key=lambda e: (_PRIORITY[e.kind], -(e.end - e.start), e.start))
    chosen: list[Entity] = []
    for e in ranked:
        if all(e.end <= c.start or e.start >= c.end for c in chosen):
            chosen.append(e)
    return sorted(chosen, key=lambda e: e.start)


@dataclass
class Redaction:
    text: str
    entities: list[Entity]
    placeholders: dict[str, str]  # placeholder -> the original value

    def restore(self, text: str) -> str:
        return restore(text, self.placeholders)


def redact(text: str, kinds: tuple[str, ...] | list[str] | None = None,
           placeholders: dict[str, str] | None = None) -> Redaction:
    """`text` with each entity replaced by a placeholder such as [PHONE_1]; the same value gets the
    same placeholder (also across calls that share `placeholders`, e.g. the turns of one chat)."""
    mapping = dict(placeholders or {})
    by_value = {v: k for k, v in mapping.items()}
    counts: dict[str, int] = {}
    for k in mapping:
        kind = k[1:].rsplit("_", 1)[0]
        counts[kind] = max(counts.get(kind, 0), int(k[:-1].rsplit("_", 1)[1]))
    entities = find_pii(text, kinds)
    out, at = [], 0
    for e in entities:
        key = by_value.get(e.text)
        if key is None:
            label = e.kind.upper()
            counts[label] = counts.get(label, 0) + 1
            key = f"[{label}_{counts[label]}]"
            mapping[key], by_value[e.text] = e.text, key
        out += [text[at:e.start], key]
        at = e.end
    out.append(text[at:])
    return Redaction("".join(out), entities, mapping)


_PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CN_ID|BANK_CARD|IP|PERSON|ADDRESS)_\d+\]")


def restore(text: str, placeholders: dict[str, str]) -> str:
    """Put the original values back where a reply repeats their placeholders."""
    if not placeholders:
        return text
    return _PLACEHOLDER.sub(lambda m: placeholders.get(m.group(), m.group()), text)


class StreamRestorer:
    """Restores placeholders in a reply that arrives in pieces: a piece that ends inside what may
    be a placeholder ("… [PHO") is held back until the placeholder closes or cannot be one."""

    _OPEN = re.compile(r"\[[A-Z_]{0,9}\d{0,4}$")

    def __init__(self, placeholders: dict[str, str]):
        self.placeholders = placeholders
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        m = self._OPEN.search(text[-16:]) if self.placeholders else None
        if m is not None:
            cut = len(text) - (len(text[-16:]) - m.start())
            text, self._held = text[:cut], text[cut:]
        return restore(text, self.placeholders)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return restore(held, self.placeholders)
