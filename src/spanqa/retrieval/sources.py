"""Files -> documents for the index: text, markdown, PDF, HTML and DOCX files, folders of them, and JSON Lines
of {"id", "text"}. The formats are read by formats/ (by content, then extension).

Every problem is an InputError that names the file (and line), so `spanqa index add` can refuse it in one
line before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spanqa.errors import InputError
from spanqa.retrieval.formats import (
    DEFAULT_MAX_PAGES,
    SUFFIXES,
    Extracted,
    decode_text,
    extract,
    sniff_format,
)

JSONL_SUFFIX = ".jsonl"
DEFAULT_MAX_BYTES = 10_000_000
# What a folder contributes: files of a format spanqa reads, by extension (a folder may hold anything).
FOLDER_SUFFIXES = frozenset({*SUFFIXES, JSONL_SUFFIX})


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    source: str  # where it came from, as error messages name it: a path, or "path line N"
    format: str = "text"
    pages: tuple[tuple[int, int], ...] | None = None  # page n's (start, end) in text is pages[n - 1]
    file_sha256: str | None = None  # of the file's bytes, so an unchanged file is skipped unread


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's content, or an InputError that names the file and the problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {p}") from None
    except IsADirectoryError:
        raise InputError(f"{what} is a directory, not a file: {p}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e.strerror}") from None
    return decode_text(raw, f"{what} {p}")


def read_context(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Extracted:
    """A file to answer from (`spanqa ask --context-file`): text as read_text reads it, or the text of a
    PDF, HTML or DOCX file with its page map."""
    p = Path(path)
    raw = read_file(p, max_bytes, "context file")
    if sniff_format(raw, p) == "text":
        return Extracted(decode_text(raw, f"context file {p}"), "text")
    return extract(raw, str(p))


def collect_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files to read: each file named (whatever its extension), and the files of each folder with an
    extension spanqa reads (recursively, in name order, hidden files and folders left out). A path that does
    not exist is an error."""
    files: list[Path] = []
    for path in paths:
        p = Path(path).expanduser()
        if p.is_dir():
            found = [
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in FOLDER_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
            files += sorted(found)
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"not found: {p}")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def document_id(file: Path, root: Path) -> str:
    """The file's path relative to `root` (the index's folder) when inside it, else its absolute path."""
    path = file.resolve()
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def read_documents(
    file: Path, id_root: Path, max_bytes: int = DEFAULT_MAX_BYTES, max_pages: int = DEFAULT_MAX_PAGES
) -> Iterator[Document]:
    """The documents in one file: one for a text, PDF, HTML or DOCX file, one per line of a JSON Lines
    file."""
    if is_jsonl(file):
        yield from _read_jsonl(file, max_bytes)
        return
    raw = read_file(file, max_bytes)
    yield file_document(file, raw, document_id(file, id_root), max_bytes, max_pages)


def is_jsonl(file: Path) -> bool:
    return file.suffix.lower() == JSONL_SUFFIX


def read_file(file: Path, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "file") -> bytes:
    """A file's bytes, refused before reading when larger than max_bytes."""
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise InputError(f"{file}: {_mb(size)} is over the limit of {_mb(max_bytes)} per document")
        return file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {file}") from None
    except IsADirectoryError:
        raise InputError(f"{what} is a directory, not a file: {file}") from None
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror}") from None


def file_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def file_document(
    file: Path,
    raw: bytes,
    doc_id: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Document:
    """The document a file's bytes hold, its text extracted by its format."""
    extracted = extract(raw, str(file), max_pages=max_pages)
    doc = Document(doc_id, extracted.text, str(file), extracted.format, extracted.pages, file_sha256(raw))
    check_document(doc, max_bytes)
    return doc


def check_document(doc: Document, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    if not isinstance(doc.id, str) or not doc.id.strip():
        raise InputError(f"{doc.source}: the id must be a non-empty string, got {doc.id!r}")
    if not isinstance(doc.text, str):
        raise InputError(f"{doc.source}: the text must be a string, not {type(doc.text).__name__}")
    if not doc.text.strip():
        raise InputError(f"{doc.source}: empty (no text)")
    if "\x00" in doc.text:
        raise InputError(f"{doc.source}: holds binary data (NUL characters), not text")
    try:
        size = len(doc.text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError(f"{doc.source}: the text holds unpaired surrogates, not valid Unicode") from None
    if size > max_bytes:
        raise InputError(f"{doc.source}: {_mb(size)} is over the limit of {_mb(max_bytes)} per document")


def _read_jsonl(file: Path, max_bytes: int) -> Iterator[Document]:
    try:
        f = open(file, "rb")  # closed by the with below, also when the caller stops early
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror}") from None
    found = False
    with f:
        for n, raw in enumerate(f, 1):
            where = f"{file} line {n}"
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{where}: not valid UTF-8 (byte {e.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict) or "id" not in record or "text" not in record:
                raise InputError(f'{where}: expected an object with "id" and "text"')
            doc_id = record["id"]
            if isinstance(doc_id, int) and not isinstance(doc_id, bool):
                doc_id = str(doc_id)
            doc = Document(doc_id, record["text"], where)
            check_document(doc, max_bytes)
            found = True
            yield doc
    if not found:
        raise InputError(f"{file}: empty (no documents)")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
