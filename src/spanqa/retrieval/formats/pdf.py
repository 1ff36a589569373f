"""PDF -> text, page by page, with pypdf: the text layer only (a scanned page without one has no text).

Pages are joined by a blank line and each page's character range is kept, so passages never cross a page
and an answer can cite its page.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from spanqa.errors import InputError
from spanqa.retrieval.formats.text import BLOCK_SEPARATOR, DEFAULT_MAX_PAGES, Extracted, clean, missing_reader


def read_pdf(data: bytes, name: str, *, max_pages: int = DEFAULT_MAX_PAGES) -> Extracted:
    try:
        import pypdf
        from pypdf.errors import DependencyError, FileNotDecryptedError
    except ImportError:
        raise missing_reader("PDF", "pypdf") from None
    with _quiet_pypdf():
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                _decrypt(reader, name)
            n_pages = len(reader.pages)
        except InputError:
            raise
        except Exception as e:  # pypdf raises many kinds on a damaged file; each means the same to a user
            raise InputError(f"{name}: not a readable PDF ({_reason(e)})") from None
        if n_pages == 0:
            raise InputError(f"{name}: the PDF has no pages")
        if n_pages > max_pages:
            raise InputError(f"{name}: {n_pages} pages is over the limit of {max_pages} pages per PDF")
        texts = []
        for number, page in enumerate(reader.pages, 1):
            try:
                texts.append(_page_text(page.extract_text()))
            except (FileNotDecryptedError, DependencyError):
                raise InputError(
                    f"{name}: the PDF is encrypted; decrypt it first (e.g. qpdf --decrypt)"
                ) from None
            except Exception as e:
                raise InputError(f"{name}: page {number} cannot be read ({_reason(e)})") from None
    if not any(texts):
        raise InputError(
            f"{name}: the PDF has no text layer (scanned pages?); spanqa reads only a PDF's text, so run "
            "OCR first (e.g. ocrmypdf)"
        )
    return _joined(texts)


def _decrypt(reader, name: str) -> None:
    """Open a PDF encrypted with an empty user password (only its permissions are restricted, as many
    are); one that needs a password to open is refused."""
    try:
        opened = reader.decrypt("")
    except Exception:  # an unsupported cipher, or AES without the cryptography package
        opened = 0
    if not opened:
        raise InputError(
            f"{name}: the PDF is encrypted (password-protected); decrypt it first (e.g. qpdf --decrypt)"
        )


def _page_text(text: str) -> str:
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
    message = " ".join(str(e).split())[:120]
    return message or type(e).__name__


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """pypdf logs a warning for every flaw it works around; the user gets our one line instead."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
