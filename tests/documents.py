"""Documents built at test time: PDFs from a minimal writer (below), DOCX with python-docx, HTML by hand.

The PDF writer is the smallest that makes a valid file: one content stream per page drawing lines of
text in the standard Helvetica font (no font file embedded), a page tree, and a byte-exact xref table.
A page given as None has no text layer (a drawn rectangle only), as a scanned page has none.
"""

from __future__ import annotations

import io
from pathlib import Path


def pdf_bytes(pages: list[list[str] | None]) -> bytes:
    """A PDF with one page per item: each a list of text lines (ASCII), or None for a page without text."""
    objects: list[bytes] = []  # object n + 1 is objects[n]

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree's number is known
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for lines in pages:
        if lines is None:
            content = b"0.5 g 72 72 400 600 re f"
        else:
            ops = [b"BT /F1 11 Tf 14 TL 72 760 Td"]
            for line in lines:
                escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                ops.append(b"(" + escaped.encode("latin-1") + b") Tj T*")
            ops.append(b"ET")
            content = b"\n".join(ops)
        stream = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (pages_obj, stream, font)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    )
    return out.getvalue()


def encrypted_pdf_bytes(pages: list[list[str] | None], password: str = "secret") -> bytes:
    """The same PDF encrypted with a user password (RC4, which pypdf writes without extra packages)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write_docx(path: Path, blocks: list[tuple[str, str]]) -> Path:
    """A DOCX of ("heading" | "paragraph", text) blocks."""
    import docx

    document = docx.Document()
    for kind, text in blocks:
        if kind == "heading":
            document.add_heading(text, level=1)
        else:
            document.add_paragraph(text)
    document.save(str(path))
    return path


def html_page(title: str, paragraphs: list[str]) -> str:
    """An HTML page with navigation, a script, a header and a footer around its main text."""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>t</title>"
        "<script>var tracking = 'Who built the lighthouse? Nobody';</script><style>p{margin:0}</style></head>"
        "<body><nav><a href='/'>Home</a> <a href='/about'>About the harbour</a></nav>"
        f"<header>Site banner</header><main><h1>{title}</h1>\n{body}</main>"
        "<footer>Copyright notice and contact</footer></body></html>"
    )
