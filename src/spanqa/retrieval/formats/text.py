"""What every format reader makes: the extracted text, its format and page map; and the text cleaning and
block joining they share."""

from __future__ import annotations

import re
from dataclasses import dataclass

from spanqa.errors import InputError

# Extracted text joins blocks (paragraphs, headings, table rows, pages) with a blank line: the passage
# splitter's paragraph boundary.
BLOCK_SEPARATOR = "\n\n"
# The longest document read, in pages: past it a PDF is refused before its text is extracted.
DEFAULT_MAX_PAGES = 2000

# Control characters other than tab and line breaks, and lone surrogates: what text extraction of a badly
# made PDF or DOCX can produce and what would break tokenizers, JSON or SQLite.
_UNWANTED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class Extracted:
    """A document's text as spanqa stores it; `pages[i]` is the (start, end) range of page i + 1."""

    text: str
    format: str
    pages: tuple[tuple[int, int], ...] | None = None

    def page_of(self, offset: int) -> int | None:
        return page_of(self.pages, offset)


def page_of(pages: tuple[tuple[int, int], ...] | list | None, offset: int) -> int | None:
    """The 1-based page whose range holds character `offset` (for an offset between two pages' texts, the
    page before it), or None for a format without pages."""
    if not pages:
        return None
    found = 1
    for n, (start, end) in enumerate(pages, 1):
        if start > offset:
            break
        if end > start:  # an empty page holds no character
            found = n
    return found


def decode_text(data: bytes, name: str) -> str:
    """A text file's content as UTF-8, or an InputError that names the file and the problem."""
    if b"\x00" in data:
        raise InputError(f"{name} holds binary data (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{name} is not valid UTF-8 (byte {e.start})") from None


def join_blocks(blocks: list[str]) -> str:
    """Blocks of text (already stripped, none empty) joined by a blank line."""
    return BLOCK_SEPARATOR.join(blocks)


def clean(text: str) -> str:
    """Extracted text without characters that are not text (controls, lone surrogates)."""
    return _UNWANTED.sub("", text)


def missing_reader(fmt: str, package: str) -> InputError:
    return InputError(f"reading {fmt} files needs the {package} package: pip install {package}")
