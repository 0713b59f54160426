"""A bilingual shop knowledge base written for the retrieval evaluation: 9 documents (Markdown,
HTML, text, DOCX, PDF; Chinese and English) and 44 labelled questions (Chinese, English,
cross-language, paraphrased, and follow-ups that only make sense after the question before)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from corpus import pdf_bytes

RETURNS = """# 退货政策

收到商品后7天内可以申请无理由退货。商品须保持完好，吊牌和包装齐全，并附上购物发票。

## 退货运费

因质量问题退货，来回运费由本店承担；因个人原因退货，运费由买家自行承担。

## 退款时间

仓库收到退货并检查无误后，退款会在3个工作日内原路退回。
"""

SHIPPING = """<html><body><h1>Shipping</h1>
<p>We ship to every country. Orders over 50 dollars ship free; smaller orders pay a flat fee of 6 dollars.</p>
<h2>Delivery times</h2><p>Domestic orders arrive in 2 to 3 business days. International orders take 7 to 14 days.</p>
<h2>Tracking</h2><p>Every parcel gets a tracking number, sent by email as soon as it leaves the warehouse.</p>
</body></html>"""

WARRANTY = """保修条款

所有电子产品自购买之日起享受两年免费保修，涵盖制造缺陷。

人为损坏、进水和私自拆机不在保修范围内。保修期内可免费维修或更换同型号产品。
"""

PAYMENT = """# 支付方式

本店支持支付宝、微信支付和银联信用卡付款。

## 分期付款

单笔订单满1000元可以申请12期免息分期，仅限信用卡。

## 发票

付款成功后可以在订单页面申请电子发票，开具后发送到您的邮箱。
"""

SIZES = """# Size guide

Our shirts run small: if you are between two sizes, choose the larger one. Trousers follow standard waist sizes.

## Exchanges

You can exchange an item for another size once, free of charge, within 30 days. Start the exchange from your order page.
"""

CONTACT = """<html><body><h1>联系客服 Contact us</h1>
<p>客服工作时间为每天早上9点到晚上9点。Our support team answers every day from 9 am to 9 pm.</p>
<p>电话 Phone: 400-123-4567。邮箱 Email: help@shop.example</p>
</body></html>"""

PRIVACY = ["Privacy policy", "We never sell your personal data to anyone.",
           "You can ask us to delete your account and all your data at any time.",
           "Payment details are handled by the payment provider and never stored by the shop."]

CARE = ["Product care", "Wash cotton shirts in cold water and hang them to dry.",
        "Do not tumble dry wool sweaters; lay them flat instead.",
        "Leather shoes should be cleaned with a damp cloth and a little leather cream."]


def _membership() -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("会员积分 Membership points", level=1)
    d.add_paragraph("每消费1元获得1个积分。积分可以在下单时抵扣现金，100积分抵1元。")
    d.add_paragraph("Points expire twelve months after you earn them.")
    d.add_heading("会员等级", level=2)
    d.add_paragraph("年消费满5000元升级为金卡会员，享受全场九五折和生日礼物。")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def documents() -> dict[str, bytes]:
    return {
        "returns.md": RETURNS.encode(), "shipping.html": SHIPPING.encode(), "warranty.txt": WARRANTY.encode(),
        "payment.md": PAYMENT.encode(), "sizes.md": SIZES.encode(), "contact.html": CONTACT.encode(),
        "membership.docx": _membership(), "privacy.pdf": pdf_bytes(PRIVACY), "care.pdf": pdf_bytes(CARE),
    }


QUESTIONS = [
    # Chinese
    ("退货政策是什么？", "returns.md", "zh"), ("收到货几天内可以退？", "returns.md", "zh"),
    ("退款多久能到账", "returns.md", "zh"), ("质量问题退货运费谁出", "returns.md", "zh"),
    ("电子产品保修多久？", "warranty.txt", "zh"), ("手机进水了还能保修吗", "warranty.txt", "zh"),
    ("可以用微信付款吗", "payment.md", "zh"), ("能分期吗？", "payment.md", "zh"), ("怎么开发票", "payment.md", "zh"),
    ("积分怎么用", "membership.docx", "zh"), ("怎样成为金卡会员", "membership.docx", "zh"),
    ("客服几点上班", "contact.html", "zh"), ("客服电话是多少", "contact.html", "zh"),
    # English
    ("Is shipping free?", "shipping.html", "en"), ("How long does international delivery take?", "shipping.html", "en"),
    ("Where is my tracking number?", "shipping.html", "en"), ("Do you sell my personal data?", "privacy.pdf", "en"),
    ("How do I delete my account?", "privacy.pdf", "en"), ("Should I pick a bigger shirt size?", "sizes.md", "en"),
    ("Can I exchange trousers for another size?", "sizes.md", "en"), ("How should I wash a cotton shirt?", "care.pdf", "en"),
    ("Can I put my wool sweater in the dryer?", "care.pdf", "en"), ("When do my points expire?", "membership.docx", "en"),
    ("What are your support hours?", "contact.html", "en"), ("What is the support email address?", "contact.html", "en"),
    # paraphrased
    ("我不想要了，能退回去吗", "returns.md", "para"), ("the package never arrived, how can I follow it", "shipping.html",
                                                  "para"),
    ("东西坏了免费修吗", "warranty.txt", "para"), ("is my card number kept by the shop", "privacy.pdf", "para"),
    ("my shoes are dirty, how do I clean leather", "care.pdf", "para"), ("买贵的东西能不能慢慢付", "payment.md", "para"),
    # cross-language
    ("How many days do I have to return an item?", "returns.md", "cross"), ("Can I pay with Alipay?", "payment.md", "cross"),
    ("运费多少钱，满多少包邮", "shipping.html", "cross"), ("怎么删除我的账号", "privacy.pdf", "cross"),
    ("衬衫尺码偏小吗", "sizes.md", "cross"), ("What does the warranty cover?", "warranty.txt", "cross"),
]

FOLLOW_UPS = [  # (history, question, document)
    (["退货政策是什么？"], "那运费呢？", "returns.md"),
    (["退货政策是什么？"], "退款要多久？", "returns.md"),
    (["Is shipping free?"], "and how long does it take?", "shipping.html"),
    (["可以用微信付款吗"], "那发票呢？", "payment.md"),
    (["How do I earn membership points?"], "and when do they expire?", "membership.docx"),
    (["电子产品保修多久？"], "进水算吗？", "warranty.txt"),
    (["What are your support hours?"], "and the phone number?", "contact.html"),
]


def write(folder: Path) -> tuple[list[Path], Path]:
    """The documents and a questions.jsonl (one {"question", "document", "kind", "history"?} per line)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, data in documents().items():
        (folder / name).write_bytes(data)
        files.append(folder / name)
    lines = [{"question": q, "document": d, "kind": k} for q, d, k in QUESTIONS]
    lines += [{"question": q, "history": h, "document": d, "kind": "follow-up"} for h, q, d in FOLLOW_UPS]
    questions = folder / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return files, questions
