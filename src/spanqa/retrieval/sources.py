"""Files -> documents for the index: text and markdown files, folders of them, JSON Lines of {"id", "text"}.

Every problem is an InputError that names the file (and line), so `spanqa index add` can refuse it in one
line before anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spanqa.errors import InputError

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst"})
JSONL_SUFFIX = ".jsonl"
DEFAULT_MAX_BYTES = 10_000_000


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    source: str  # where it came from, as error messages name it: a path, or "path line N"


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
    if b"\x00" in raw:
        raise InputError(f"{what} {p} holds binary data (NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {p} is not valid UTF-8 (byte {e.start})") from None


def collect_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files to read: each file named, and the text/JSONL files of each folder (recursively, in name
    order, hidden files and folders left out). A path that does not exist is an error."""
    files: list[Path] = []
    for path in paths:
        p = Path(path).expanduser()
        if p.is_dir():
            found = [
                f
                for f in p.rglob("*")
                if f.is_file()
                and (f.suffix.lower() in TEXT_SUFFIXES or f.suffix.lower() == JSONL_SUFFIX)
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


def read_documents(file: Path, id_root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Document]:
    """The documents in one file: one for a text file, one per line of a JSON Lines file."""
    if file.suffix.lower() == JSONL_SUFFIX:
        yield from _read_jsonl(file, max_bytes)
        return
    try:
        size = file.stat().st_size
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror}") from None
    if size > max_bytes:
        raise InputError(f"{file}: {_mb(size)} is over the limit of {_mb(max_bytes)} per document")
    doc = Document(document_id(file, id_root), read_text(file, "file"), str(file))
    check_document(doc, max_bytes)
    yield doc


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
