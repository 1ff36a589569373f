"""File formats -> the plain text spanqa indexes and reads, keeping the structure the format gives.

Each reader turns a file's bytes into an `Extracted`: the text (paragraphs and headings separated by blank
lines), its format, and for paged formats (PDF) the character range of each page, so an answer can cite its
page. Every offset spanqa reports indexes `Extracted.text` exactly. A file that cannot be read is an
InputError naming the file, never a traceback and never half a document.

Which reader: the content's signature first (a PDF or a zip archive is recognised by its first bytes, so a
misnamed file is still read right), then the extension, then a look at the start of the text (HTML).
"""

from __future__ import annotations

import re
from pathlib import PurePath

from spanqa.retrieval.formats.text import (
    BLOCK_SEPARATOR,
    DEFAULT_MAX_PAGES,
    Extracted,
    decode_text,
    page_of,
)

__all__ = [
    "BLOCK_SEPARATOR",
    "DEFAULT_MAX_PAGES",
    "FORMATS",
    "SUFFIXES",
    "Extracted",
    "decode_text",
    "extract",
    "page_of",
    "sniff_format",
]

FORMATS = ("text", "pdf", "html", "docx")
TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst"})
SUFFIXES = {
    **dict.fromkeys(TEXT_SUFFIXES, "text"),
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".docx": "docx",
}
_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S
)


def sniff_format(data: bytes, name: str | PurePath) -> str:
    """The format of a file: by its first bytes where they are unambiguous, else by its extension, else
    HTML when it starts like HTML, else text."""
    head = data[:1024]
    if head.startswith(b"%PDF-"):
        return "pdf"
    suffix = PurePath(name).suffix.lower()
    if head.startswith(b"PK\x03\x04") and (suffix == ".docx" or b"word/document.xml" in data):
        return "docx"  # a zip archive holding a Word document, or named .docx (the reader says what is wrong)
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if _HTML_START.match(head.removeprefix(b"\xef\xbb\xbf")):
        return "html"
    return "text"


def extract(data: bytes, name: str, *, max_pages: int = DEFAULT_MAX_PAGES) -> Extracted:
    """The text of a file's bytes; `name` names it in errors and gives its extension."""
    fmt = sniff_format(data, name)
    if fmt == "pdf":
        from spanqa.retrieval.formats.pdf import read_pdf

        return read_pdf(data, name, max_pages=max_pages)
    if fmt == "html":
        from spanqa.retrieval.formats.html import read_html

        return read_html(data, name)
    if fmt == "docx":
        from spanqa.retrieval.formats.docx import read_docx

        return read_docx(data, name)
    return Extracted(decode_text(data, f"file {name}"), "text")
