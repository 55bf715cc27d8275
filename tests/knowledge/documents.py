"""Small documents of every ingested type, written by the tests themselves (public-domain facts, our wording)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["FACTS", "write_documents", "write_docx", "write_pdf"]

FACTS = {
    "seine.txt": "The Seine is the river that flows through Paris before it reaches the English Channel at Le Havre.",
    "everest.md": (
        "# Mountains\n\nMount Everest, on the border of Nepal and China, is the highest mountain above sea level."
    ),
    "jupiter.html": (
        "<html><head><style>p {color: red}</style><script>var hidden = 1;</script></head><body>"
        "<h1>Planets</h1><p>Jupiter is the largest planet of the Solar System, a gas giant with a Great Red Spot.</p>"
        "</body></html>"
    ),
    "penicillin.docx": "Alexander Fleming discovered penicillin in 1928 in a London laboratory.",
    "pyramid.pdf": "The Great Pyramid of Giza was built for the pharaoh Khufu.",
}


def write_pdf(path: Path, text: str) -> None:
    """A one-page PDF showing `text` in Helvetica: built by hand (offsets and all), read back by pypdf."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))


def write_docx(path: Path, text: str) -> None:
    from docx import Document

    doc = Document()
    doc.add_heading("Medicine", level=1)
    doc.add_paragraph(text)
    doc.save(str(path))


def write_documents(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FACTS.items():
        if name.endswith(".pdf"):
            write_pdf(folder / name, text)
        elif name.endswith(".docx"):
            write_docx(folder / name, text)
        else:
            (folder / name).write_text(text)
    return folder
