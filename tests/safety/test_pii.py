"""PII detection and redaction, per entity type, with valid and invalid examples: what only looks
like an ID, a card or an address is left alone."""

from __future__ import annotations

import pytest

from aigc.safety.pii import find_pii, luhn_ok, redact, restore, valid_cn_id


def kinds(text: str, only: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    return [(e.kind, e.text) for e in find_pii(text, only)]


@pytest.mark.parametrize("text", ["wang.xm@example.com", "a+tag@sub.example.co.uk", "客服_01@shop.cn".replace("客服_", "cs")])
def test_email(text):
    assert kinds(f"请发到 {text} 谢谢", ("email",)) == [("email", text)]


@pytest.mark.parametrize("text", ["user@localhost", "@example.com", "name@.com", "a@b.c"])
def test_not_email(text):
    assert kinds(text, ("email",)) == []


@pytest.mark.parametrize("text", ["13812345678", "138-1234-5678", "138 1234 5678", "+86 139 1234 5678", "0086-15912345678",
                                  "010-62345678", "0755-1234567", "(021)12345678",
                                  "+1 (415) 555-2671", "+44 20 7946 0958", "+8613812345678"])
def test_phone(text):
    assert kinds(f"电话 {text} 联系", ("phone",)) == [("phone", text)]


@pytest.mark.parametrize("text", ["12812345678", "1381234567", "订单号 2024060112345", "123-4567", "+1 23"])
def test_not_phone(text):
    assert kinds(text, ("phone",)) == []


def test_chinese_resident_id_needs_its_checksum_and_a_real_birth_date():
    assert valid_cn_id("11010519491231002X") and valid_cn_id("440308199003071235")
    assert valid_cn_id("11010519491231002x")  # a lower-case x is the same check character
    assert not valid_cn_id("110105194912310021")  # wrong check character
    assert not valid_cn_id("110105194902301234")  # 30 February
    assert not valid_cn_id("910105194912310021")  # no region starts with 9
    assert kinds("身份证号：440308199003071235。", ("cn_id",)) == [("cn_id", "440308199003071235")]
    assert kinds("身份证号：440308199003071234。", ("cn_id",)) == []
    assert kinds("订单 4403081990030712351", ("cn_id",)) == []  # part of a longer number


def test_bank_cards_pass_the_luhn_check():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    for card in ("4111 1111 1111 1111", "6222021234567890128", "5500-0000-0000-0004"):
        assert kinds(f"卡号 {card}", ("bank_card",)) == [("bank_card", card)], card
    for not_card in ("4111 1111 1111 1112", "1234567890123", "0000000000000000"):
        assert kinds(f"卡号 {not_card}", ("bank_card",)) == [], not_card


@pytest.mark.parametrize(("text", "found"), [("192.168.1.20", True), ("8.8.8.8", True), ("2001:db8::8a2e:370:7334", True),
                                             ("fe80::1", True), ("256.1.1.1", False), ("1.2.3", False),
                                             ("version 1.2.3.4.5", False), ("12:30:45", False)])
def test_ip(text, found):
    assert (kinds(f"from {text} today", ("ip",)) == [("ip", text)]) is found


def test_names_and_addresses_in_both_languages():
    found = kinds("我叫王小明，住在上海市浦东新区世纪大道100号2001室。")
    assert ("person", "王小明") in found and ("address", "上海市浦东新区世纪大道100号2001室") in found
    assert ("person", "Jane Doe") in kinds("Please ask Dr. Jane Doe.")
    assert ("address", "221 Baker Street") in kinds("He lives at 221 Baker Street, London.")
    assert kinds("北京是中国的首都，人工智能发展很快。", ("person", "address")) == []
    assert kinds("The street was quiet.", ("address",)) == []


def test_redact_and_restore():
    text = "王小明的手机是13812345678，备用 13812345678，邮箱 wang@example.com。"
    r = redact(text, ("phone", "email"))
    assert r.text == "王小明的手机是[PHONE_1]，备用 [PHONE_1]，邮箱 [EMAIL_1]。"  # one value, one placeholder
    assert r.restore("好的，我们会打 [PHONE_1] 联系您。") == "好的，我们会打 13812345678 联系您。"
    nxt = redact("另一个号码 13998765432，还是 13812345678", ("phone",), r.placeholders)
    assert nxt.text == "另一个号码 [PHONE_2]，还是 [PHONE_1]"  # numbering continues across turns
    assert restore("[PHONE_9] stays", nxt.placeholders) == "[PHONE_9] stays"
    with pytest.raises(ValueError, match="unknown PII type"):
        find_pii("x", ("passport",))
