"""Small documents in every supported format, made here (bilingual), for the knowledge tests."""

from __future__ import annotations

import io

RETURNS_MD = """# 退货政策

收到商品后7天内可以无理由退货。退货时请保持商品完好，并附上发票。

## 运费

质量问题导致的退货，运费由我们承担；其他原因的退货，运费由买家承担。

# Returns

You can return any item within 7 days of delivery. Keep the receipt and the original box.
""".encode()

SHIPPING_HTML = b"""<!doctype html><html><head><title>x</title><style>p{}</style><script>var a=1;</script></head>
<body><nav>Home | Shop</nav><h1>Shipping</h1><p>We ship worldwide. Orders over 50 dollars ship free.</p>
<h2>Delivery times</h2><ul><li>Domestic: 2 to 3 business days.</li><li>International: 7 to 14 days.</li></ul>
<footer>(c) shop</footer></body></html>"""

WARRANTY_TXT_GB = "保修条款\n\n所有电子产品享受两年保修，涵盖制造缺陷。人为损坏不在保修范围内。".encode("gb18030")


def docx_bytes() -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("Membership", level=1)
    d.add_paragraph("Members earn one point per dollar spent. Points expire after twelve months.")
    d.add_heading("会员积分", level=2)
    d.add_paragraph("每消费一元获得一个积分，积分十二个月后过期。")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def pdf_bytes(lines: list[str]) -> bytes:
    """A minimal one-page PDF with a text layer (Helvetica, ASCII text)."""
    text = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(text)} >>\nstream\n{text}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


PRIVACY_PDF_LINES = ["Privacy policy", "We never sell your personal data.",
                     "You can ask us to delete your account at any time."]
