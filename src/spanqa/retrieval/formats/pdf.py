"""PDF -> text, page by page, with PDFium (Chrome's PDF engine, through pypdfium2): the text layer only (a
scanned page without one has no text).

Pages are joined by a blank line and each page's character range is kept, so passages never cross a page
and an answer can cite its page. PDFium is compiled C, fuzzed as the engine that opens untrusted PDFs in
Chrome, and reads a dense page in a few milliseconds (pure-Python readers such as pypdf take ~100 ms: see
benchmarks/results/index_documents.md). It is not thread-safe, so one lock serializes its use.
"""

from __future__ import annotations

import threading

from spanqa.errors import InputError
from spanqa.retrieval.formats.text import BLOCK_SEPARATOR, DEFAULT_MAX_PAGES, Extracted, clean, missing_reader

_PDFIUM = threading.Lock()


def read_pdf(data: bytes, name: str, *, max_pages: int = DEFAULT_MAX_PAGES) -> Extracted:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise missing_reader("PDF", "pypdfium2") from None
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)  # opens a PDF with an empty user password, as viewers do
        except pdfium.PdfiumError as e:
            if "password" in str(e).lower():
                raise InputError(
                    f"{name}: the PDF is encrypted (password-protected); decrypt it first "
                    "(e.g. qpdf --decrypt)"
                ) from None
            raise InputError(f"{name}: not a readable PDF ({_reason(e)})") from None
        try:
            n_pages = len(document)
            if n_pages == 0:
                raise InputError(f"{name}: the PDF has no pages")
            if n_pages > max_pages:
                raise InputError(f"{name}: {n_pages} pages is over the limit of {max_pages} pages per PDF")
            texts = [_page_text(document, i, name) for i in range(n_pages)]
        finally:
            document.close()
    if not any(texts):
        raise InputError(
            f"{name}: the PDF has no text layer (scanned pages?); spanqa reads only a PDF's text, so run "
            "OCR first (e.g. ocrmypdf)"
        )
    return _joined(texts)


def _page_text(document, index: int, name: str) -> str:
    import pypdfium2 as pdfium

    try:
        page = document[index]
        try:
            textpage = page.get_textpage()
            try:
                text = textpage.get_text_range()
            finally:
                textpage.close()
        finally:
            page.close()
    except pdfium.PdfiumError as e:
        raise InputError(f"{name}: page {index + 1} cannot be read ({_reason(e)})") from None
    lines = clean(text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def _joined(texts: list[str]) -> Extracted:
    parts: list[str] = []
    pages: list[tuple[int, int]] = []
    cursor = 0
    for text in texts:
        if text:
            if parts:
                parts.append(BLOCK_SEPARATOR)
                cursor += len(BLOCK_SEPARATOR)
            parts.append(text)
        pages.append((cursor, cursor + len(text)))
        cursor += len(text)
    return Extracted("".join(parts), "pdf", tuple(pages))


def _reason(e: Exception) -> str:
    message = " ".join(str(e).split()).removeprefix("Failed to load document ")[:120]
    return message.strip("()") or type(e).__name__
