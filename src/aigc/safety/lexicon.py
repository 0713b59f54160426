"""The lexicon layer of moderation: phrases that are harmful in almost any context, matched on a
normalised text so the usual disguises do not hide them.

Normalisation undoes what people do to slip past filters: full-width and compatibility forms
(NFKC), upper case, Traditional characters (OpenCC t2s), separators inside a word (k i l l, 自.杀),
digits for letters (k1ll), and Chinese internet homophones and pinyin for the sensitive words
(紫砂 -> 自杀, zha弹 -> 炸弹). The classifier sees the original text; the lexicon its normal form.

Precision first: a phrase is listed only when its plain meaning is the harm ("kill myself", "制作炸弹"),
never a topic word alone (自杀 appears in "自杀干预热线", bomb in history questions). Child sexual
content is matched as a minor term and a sexual term in the same text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from aigc.safety.moderation_data import PARENT

LEXICON_SCORE = 0.99

_HOMOPHONES = {"紫砂": "自杀", "自刹": "自杀", "zisha": "自杀", "去si": "去死", "去屎": "去死", "炸蛋": "炸弹",
               "zha弹": "炸弹", "du品": "毒品", "毒pin": "毒品", "冰du": "冰毒", "bing毒": "冰毒", "涩情": "色情",
               "se情": "色情", "色q": "色情", "做i": "做爱", "zuo爱": "做爱", "huang色": "黄色", "ge腕": "割腕",
               "割wan": "割腕", "上diao": "上吊", "zha药": "炸药", "xi钱": "洗钱", "fei物": "废物", "脑can": "脑残",
               "jian人": "贱人", "chu生": "畜生", "xia毒": "下毒"}
_HOMOPHONE_RE = re.compile("|".join(re.escape(k) for k in sorted(_HOMOPHONES, key=len, reverse=True)))
_CJK_GAP = re.compile(r"(?<=[\u4e00-\u9fff])[\s.·*_\-~]+(?=[\u4e00-\u9fff])")
_SPACED = re.compile(r"\b[a-z](?:[ .*_\-][a-z]){2,}\b")
_LEET_WORD = re.compile(r"\b(?=[a-z0-9]*[a-z])(?=[a-z0-9]*[013457])[a-z0-9]+\b")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})


@lru_cache(maxsize=1)
def _t2s():
    try:
        import opencc

        return opencc.OpenCC("t2s")
    except Exception:  # noqa: BLE001 -- Traditional text is then matched as it is
        return None


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    converter = _t2s()
    if converter is not None and re.search(r"[\u4e00-\u9fff]", t):
        t = converter.convert(t)
    t = _CJK_GAP.sub("", t)
    t = _SPACED.sub(lambda m: re.sub(r"[ .*_\-]", "", m.group()), t)
    t = _LEET_WORD.sub(lambda m: m.group().translate(_LEET), t)
    return _HOMOPHONE_RE.sub(lambda m: _HOMOPHONES[m.group()], t)


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_RULES: dict[str, re.Pattern[str]] = {
    "self-harm/intent": _any(
        r"\b(?:want|going|plan|planning|decided) to (?:kill|hang|hurt) myself\b", r"\bkill(?:ing)? myself (?:tonight|today)\b",
        r"\bend(?:ing)? my (?:own )?life\b", r"\bi (?:just )?want to die\b", r"我(?:真的|一直|好|很|就)?(?:想|要)自杀",
        r"我不想活了", r"结束自己的生命",
        r"我想死", r"我要去死", r"我今晚就.{0,4}自杀"),
    "self-harm/instructions": _any(
        r"\b(?:painless|easiest|quickest|fastest|best|surest) way to (?:kill myself|die|commit suicide|end my life)\b",
        r"\bhow (?:do i|to|can i) (?:kill myself|commit suicide|hang myself|cut my wrists)\b",
        r"\bhow many .{1,30} to (?:die|never wake up|overdose)\b", r"怎么自杀", r"如何自杀", r"自杀(?:最|的)?(?:方法|不痛苦)",
        r"割腕怎么", r"怎么割腕", r"怎么上吊", r"教我.{0,4}上吊", r"吃多少.{0,8}(?:才能|就能|会)(?:死|再也醒不过来|醒不过来)"),
    "illicit/violent": _any(
        r"\b(?:make|build|assemble|making|building) (?:a |an )?(?:pipe )?bomb(?![-\w])", r"\bpipe bomb\b",
        r"\b(?:make|making) explosives?\b", r"\bnerve (?:gas|agent)\b", r"\buntraceable (?:gun|firearm)\b",
        r"\bhire (?:a )?hitman\b", r"\bpoison (?:someone|my \w+|him|her) without\b",
        r"(?:制作|制造|做|自制)(?:一个|个)?(?:土)?炸弹", r"土炸弹", r"(?:制作|制造|做)炸药", r"神经毒气", r"雇(?:个)?杀手", r"怎么下毒",
        r"查不到来源的枪"),
    "illicit": _any(
        r"\bcook(?:ing)? meth\b", r"\blaunder(?:ing)? money\b", r"\bmoney laundering scheme\b",
        r"\bstolen credit card(?: number)?s?\b", r"\bfake id\b", r"\bwrite (?:a )?ransomware\b",
        r"\bshoplift(?:ing)? without\b", r"(?:制作|做|制造)冰毒", r"(?:怎么|如何|教我(?:怎么)?)洗钱",
        r"偷东西不被", r"盗刷的信用卡", r"假身份证", r"勒索病毒(?:程序)?.{0,4}(?:写|编)|(?:写|编)(?:一个)?.{0,6}勒索病毒"),
    "hate": _any(
        r"\bare subhuman\b", r"\bdon'?t deserve human rights\b", r"\bfilthy animals\b", r"\bare (?:all )?parasites\b",
        r"不配享有人权", r"根本不是人", r"天生(?:比我们)?低等", r"肮脏的畜生", r"都是(?:罪犯和)?寄生虫"),
    "harassment": _any(
        r"\byou(?:'re| are) (?:a |an |so )?(?:worthless|pathetic|stupid|dumb|brainless) (?:idiot|loser|moron|piece)\b",
        r"\bwaste of space\b", r"你这个(?:废物|脑残|贱人|垃圾)", r"你就是个废物", r"活着就是浪费空气"),
    "violence": _any(
        r"\bi (?:will|'ll|am going to|'m going to) (?:kill|stab|shoot|murder) (?:you|him|her|them)\b",
        r"\bkill you and your family\b", r"杀了你(?:和你)?全家", r"我要杀了(?:你|他|她)", r"捅死他", r"打断.{0,4}骨头"),
    "sexual": _any(r"\bexplicit sex(?:ual)? scene\b", r"\bwrite porn\b", r"黄色小说", r"色情文", r"露骨的性"),
}
_MINOR = re.compile(r"\b(?:child|children|kid|kids|minor|underage|(?:[1-9]|1[0-7])[- ]year[- ]old|teenage|preteen|"
                    r"middle school|elementary school)\b|小孩|儿童|幼女|幼童|未成年|初中生|小学生|初中|(?:[一二三四五六七八九十]|十[一二三四五六七]|[1-9]|1[0-7])岁")
_SEXUAL = re.compile(r"\b(?:sex|sexual|sexually|erotic|porn|pornographic|nude|naked|undress(?:ing)?)\b|色情|性爱|做爱|裸|性暗示|黄色")


def lexicon_hits(text: str) -> dict[str, str]:
    """{category: the normalised phrase that matched} for the lexicon's categories (parents included)."""
    t = normalize(text)
    hits: dict[str, str] = {}
    for category, pattern in _RULES.items():
        m = pattern.search(t)
        if m:
            hits[category] = m.group()
    minor, sexual = _MINOR.search(t), _SEXUAL.search(t)
    if minor and sexual:
        hits["sexual/minors"] = f"{minor.group()} + {sexual.group()}"
    for category in list(hits):
        parent = PARENT.get(category)
        if parent is not None:
            hits.setdefault(parent, hits[category])
    if "illicit/violent" in hits:
        hits.setdefault("violence", hits["illicit/violent"])
    return hits
