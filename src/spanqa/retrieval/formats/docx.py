"""DOCX (Word) -> text with python-docx: paragraphs and headings as blocks, table rows as lines of cells.

The archive is checked before it is opened: a DOCX is a zip file, and a small zip can expand to gigabytes
(a zip bomb), so the sizes its entries declare are added up first and a file expanding past the limit is
refused. (zipfile never inflates an entry past its declared size, so the check bounds the memory used.)
Word computes page breaks when it lays a document out; they are not in the file, so a DOCX has no pages.
"""

from __future__ import annotations

import io
import zipfile

from spanqa.errors import InputError
from spanqa.retrieval.formats.text import Extracted, clean, join_blocks, missing_reader

# Uncompressed bytes a DOCX may expand to, all entries together (images included): far above any real
# document's text, far below what would exhaust memory.
MAX_EXPANDED_BYTES = 200_000_000
MAX_ENTRIES = 10_000


def read_docx(data: bytes, name: str) -> Extracted:
    try:
        import docx
    except ImportError:
        raise missing_reader("DOCX", "python-docx") from None
    _check_archive(data, name)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [text for part in document.iter_inner_content() for text in _texts(part)]
    except InputError:
        raise
    except Exception as e:  # python-docx and lxml raise many kinds on a damaged file
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise InputError(f"{name}: not a readable DOCX ({reason})") from None
    blocks = [b for b in (clean(b).strip() for b in blocks) if b]
    if not blocks:
        raise InputError(f"{name}: empty (the DOCX has no text)")
    return Extracted(join_blocks(blocks), "docx")


def _check_archive(data: bytes, name: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise InputError(f"{name}: not a readable DOCX (not a valid zip archive: {e})") from None
    if len(entries) > MAX_ENTRIES:
        raise InputError(f"{name}: the DOCX holds {len(entries)} files; at most {MAX_ENTRIES}")
    expanded = sum(e.file_size for e in entries)
    if expanded > MAX_EXPANDED_BYTES:
        raise InputError(
            f"{name}: the DOCX expands to {expanded / 1e6:,.0f} MB, over the limit of "
            f"{MAX_EXPANDED_BYTES / 1e6:,.0f} MB (a zip bomb?)"
        )
    if "word/document.xml" not in {e.filename for e in entries}:
        raise InputError(f"{name}: a zip archive but not a DOCX (no word/document.xml)")


def _texts(part) -> list[str]:
    """A paragraph's text, or a table's rows (cells joined by " | ", nested tables flattened)."""
    if hasattr(part, "rows"):
        rows = []
        for row in part.rows:
            cells: list[str] = []
            last = None
            for cell in row.cells:
                if cell._tc is last:  # a cell merged across columns repeats: keep it once
                    continue
                last = cell._tc
                text = " ".join(t for inner in cell.iter_inner_content() for t in _texts(inner))
                cells.append(" ".join(text.split()))
            rows.append(" | ".join(c for c in cells if c))
        return ["\n".join(r for r in rows if r)]
    return [part.text]
