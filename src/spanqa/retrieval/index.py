"""A persistent document index: documents and their passages in SQLite, ranked by FTS5's BM25.

One `add` is one transaction (a crash or kill mid-add leaves the index as it was); WAL mode lets readers
answer while a writer adds. Files are read by sources.py; passages come from passages.py, ranking from
bm25.py (the same ranking Reader.answer uses on long texts). See docs/index.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spanqa.errors import InputError, check_positive
from spanqa.prediction import Prediction
from spanqa.retrieval.bm25 import match_query
from spanqa.retrieval.formats import DEFAULT_MAX_PAGES
from spanqa.retrieval.passages import Passage, split_passages
from spanqa.retrieval.regions import Region, regions_of
from spanqa.retrieval.schema import SCHEMA_VERSION, open_schema
from spanqa.retrieval.sources import (
    DEFAULT_MAX_BYTES,
    Document,
    check_document,
    collect_files,
    document_id,
    file_document,
    file_sha256,
    is_jsonl,
    read_documents,
    read_file,
)

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "AddReport", "DocumentIndex", "DocumentInfo", "Hit"]

DEFAULT_TIMEOUT = 10.0
DEFAULT_SEARCH_PASSAGES = 5


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    source: str
    chars: int
    passages: int
    sha256: str
    added: str  # ISO 8601, UTC
    format: str = "text"  # text, pdf, html or docx
    pages: int | None = None  # for a format with pages


@dataclass(frozen=True)
class Hit:
    """A passage found for a question: `text == index.text(doc)[start:end]`; higher score is better."""

    doc: str
    passage: int
    start: int
    end: int
    text: str
    score: float
    page: int | None = None


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unchanged since they were last added
    refused: list[str] = field(default_factory=list)  # "file: why", only with skip_bad


class DocumentIndex:
    """Documents in an SQLite file, searchable by BM25 and answerable with a Reader. Thread-safe."""

    def __init__(
        self, path: str | os.PathLike, *, create: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        if self.path.is_dir():
            raise InputError(f"index {self.path} is a directory, not a database file")
        if not create and not self.path.is_file():
            raise InputError(
                f"no index at {self.path}; create one with: spanqa index add --db {self.path} PATH"
            )
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise InputError(f"cannot open index {self.path}: {e}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            open_schema(self._db, self.path, create)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise InputError(f"{self.path} is not a spanqa index ({e})") from None
        except BaseException:
            self._db.close()
            raise
        self.passage_chars = int(self._meta("passage_chars"))

    def __enter__(self) -> DocumentIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writing ---------------------------------------------------------------------------------------

    def add(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        progress: bool = False,
        skip_bad: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> AddReport:
        """Add text, markdown, PDF, HTML and DOCX files, folders of them (recursively) and JSON Lines files,
        all or nothing. A file whose bytes are unchanged since it was added is skipped without reading it.

        A file that cannot be used (empty, binary, not UTF-8, too big, a PDF that is encrypted, damaged or
        without a text layer, bad JSONL...) is an InputError naming it and nothing is added, unless
        `skip_bad`: then it is left out and named in `AddReport.refused`.
        """
        check_positive("max_pages", max_pages)
        files = collect_files(paths)
        report = AddReport()
        with self._write() as db:
            seen: dict[str, str] = {}
            bar = _progress(files, progress)
            for file in bar:
                if progress:
                    bar.set_postfix_str(file.name[-40:], refresh=False)
                db.execute("SAVEPOINT file")
                marks = (len(report.added), len(report.replaced), len(report.skipped), len(seen))
                docs = self._file_documents(db, file, max_bytes, max_pages)
                while True:
                    try:
                        doc = next(docs)
                    except StopIteration:
                        break
                    except InputError as e:  # the file is bad: all or nothing, or leave it out
                        if not skip_bad:
                            raise
                        db.execute("ROLLBACK TO file")
                        _forget(report, seen, marks)
                        report.refused.append(str(e))
                        log.warning("skipped: %s", e)
                        break
                    self._put(db, doc, seen, report)  # a duplicate id is refused even with skip_bad
                db.execute("RELEASE file")
        return report

    def _file_documents(
        self, db: sqlite3.Connection, file: Path, max_bytes: int, max_pages: int
    ) -> Iterator[Document | str]:
        """The documents of a file; for a file stored with the same bytes, only its id (unchanged)."""
        root = self.path.resolve().parent
        if is_jsonl(file):
            yield from read_documents(file, root, max_bytes, max_pages)
            return
        raw = read_file(file, max_bytes)
        doc_id = document_id(file, root)
        stored = db.execute("SELECT file_sha256 FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if stored is not None and stored[0] == file_sha256(raw):
            yield doc_id
            return
        yield file_document(file, raw, doc_id, max_bytes, max_pages)

    def add_texts(
        self, documents: Iterable[tuple[str, str]], *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> AddReport:
        """Add (id, text) pairs, all or nothing."""
        report = AddReport()
        with self._write() as db:
            seen: dict[str, str] = {}
            for i, pair in enumerate(documents):
                if not isinstance(pair, tuple | list) or len(pair) != 2:
                    raise InputError(f"document {i}: expected an (id, text) pair")
                doc = Document(pair[0], pair[1], f"document {i}")
                check_document(doc, max_bytes)
                self._put(db, doc, seen, report)
        return report

    def remove(self, ids: Iterable[str]) -> None:
        """Remove documents by id, all or nothing (an unknown id removes none)."""
        ids = list(ids)
        with self._write() as db:
            for doc_id in ids:
                if db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
                    raise InputError(f"no document with id {doc_id!r} in {self.path}")
                _delete(db, doc_id)

    def _put(
        self, db: sqlite3.Connection, doc: Document | str, seen: dict[str, str], report: AddReport
    ) -> None:
        """Store a document (replacing one of the same id), or count it unchanged (`doc` is then its id)."""
        doc_id, source = (doc, doc) if isinstance(doc, str) else (doc.id, doc.source)
        if doc_id in seen:
            raise InputError(f"duplicate id {doc_id!r}: {seen[doc_id]} and {source}")
        seen[doc_id] = source
        if isinstance(doc, str):
            report.skipped.append(doc_id)
            return
        digest = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
        old = db.execute("SELECT sha256, format FROM documents WHERE id = ?", (doc.id,)).fetchone()
        if old is not None and old == (digest, doc.format):
            # same text from new bytes (a PDF re-saved): remember the bytes, so the next run skips them unread
            db.execute("UPDATE documents SET file_sha256 = ? WHERE id = ?", (doc.file_sha256, doc.id))
            report.skipped.append(doc.id)
            return
        if old is not None:
            _delete(db, doc.id)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        pages = json.dumps([list(p) for p in doc.pages]) if doc.pages is not None else None
        db.execute(
            "INSERT INTO documents (id, source, sha256, text, added, format, pages, file_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.id, doc.source, digest, doc.text, now, doc.format, pages, doc.file_sha256),
        )
        for n, (page, p) in enumerate(_passages(doc, self.passage_chars)):
            cur = db.execute(
                'INSERT INTO passages (doc, n, start, "end", page) VALUES (?, ?, ?, ?, ?)',
                (doc.id, n, p.start, p.end, page),
            )
            db.execute("INSERT INTO passage_text (rowid, text) VALUES (?, ?)", (cur.lastrowid, p.text))
        (report.replaced if old is not None else report.added).append(doc.id)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back whole on any error or interrupt."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now, not halfway through
            except sqlite3.OperationalError as e:
                raise self._error(e) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as e:
                self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.OperationalError):
                    raise self._error(e) from None
                raise

    def _error(self, e: sqlite3.OperationalError) -> InputError:
        if "locked" in str(e) or "busy" in str(e):
            return InputError(
                f"index {self.path} is locked by another writer (waited {self.timeout:g} s); try again later"
            )
        return InputError(f"cannot write index {self.path}: {e}")

    # ---- reading ---------------------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        rows = self._read(
            "SELECT d.id, d.source, length(d.text), count(p.id), d.sha256, d.added, d.format, "
            "json_array_length(d.pages) FROM documents d "
            "LEFT JOIN passages p ON p.doc = d.id GROUP BY d.id ORDER BY d.id"
        )
        return [DocumentInfo(*row) for row in rows]

    def formats(self) -> dict[str, int]:
        """How many documents of each format the index holds."""
        return dict(self._read("SELECT format, count(*) FROM documents GROUP BY format ORDER BY format"))

    def pages(self, doc_id: str) -> list[tuple[int, int]] | None:
        """A document's page map: page n's (start, end) in its stored text is the item n - 1; None for
        a format without pages."""
        rows = self._read("SELECT pages FROM documents WHERE id = ?", (doc_id,))
        if not rows:
            raise InputError(f"no document with id {doc_id!r} in {self.path}")
        return None if rows[0][0] is None else [tuple(p) for p in json.loads(rows[0][0])]

    def text(self, doc_id: str) -> str:
        """The stored text of a document: the string that answer and passage offsets index."""
        rows = self._read("SELECT text FROM documents WHERE id = ?", (doc_id,))
        if not rows:
            raise InputError(f"no document with id {doc_id!r} in {self.path}")
        return rows[0][0]

    def search(self, question: str, k: int = DEFAULT_SEARCH_PASSAGES) -> list[Hit]:
        """The k passages that BM25 ranks best for the question (fewer if fewer share a word with it)."""
        check_positive("k", k)
        query = match_query(question)
        if query is None:
            return []
        rows = self._read(
            'SELECT p.doc, p.n, p.start, p."end", t.text, -t.rank, p.page FROM '
            "(SELECT rowid, text, rank FROM passage_text WHERE passage_text MATCH ? ORDER BY rank LIMIT ?) t "
            "JOIN passages p ON p.id = t.rowid ORDER BY t.rank, p.id",
            (query, k),
        )
        return [Hit(*row) for row in rows]

    def answer(
        self, question: str, reader: Any, *, passages: int = DEFAULT_SEARCH_PASSAGES, **reading: Any
    ) -> Prediction:
        """Retrieve the best passages, read them with `reader`, and answer from all of them together.

        `reading`: Reader.answer's options (top_k, max_answer_len, null_threshold, max_seq_len,
        doc_stride). Answers carry the document id (`doc`), the passage number and offsets into the
        document's stored text.
        """
        from spanqa.errors import check_text

        check_text(question, "question")
        check_positive("passages", passages)
        regions = self._retrieve(question, passages)
        if not regions:  # nothing shares a word with the question: nothing to read
            return Prediction([], True, float("-inf"))
        pred = reader.answer(question, contexts=[r.text for r in regions], retrieve="never", **reading)
        answers = [regions[a.doc].cite(a) for a in pred.answers]
        return dataclasses.replace(pred, answers=answers)

    def _retrieve(self, question: str, k: int) -> list[Region]:
        """The regions to read, with their texts, from one snapshot of the index (a concurrent rm or add
        cannot change a document between finding and reading its passages)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                regions = regions_of(self.search(question, k))
                # SQLite's substr counts characters (code points) from 1, as Python indexes str from 0.
                sql = "SELECT substr(text, ?, ?), source, format FROM documents WHERE id = ?"
                for r in regions:
                    r.text, r.source, r.format = self._read(sql, (r.start + 1, r.end - r.start, r.doc))[0]
            finally:
                self._db.execute("COMMIT")
        return regions

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as e:
                raise InputError(f"cannot read index {self.path}: {e}") from None

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None


def _delete(db: sqlite3.Connection, doc_id: str) -> None:
    db.execute("DELETE FROM passage_text WHERE rowid IN (SELECT id FROM passages WHERE doc = ?)", (doc_id,))
    db.execute("DELETE FROM passages WHERE doc = ?", (doc_id,))
    db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))


def _passages(doc: Document, max_chars: int) -> Iterator[tuple[int | None, Passage]]:
    """(page, passage) pairs of a document, in order: a paged document's passages never cross a page."""
    if doc.pages is None:
        for p in split_passages(doc.text, max_chars):
            yield None, p
        return
    for page, (start, end) in enumerate(doc.pages, 1):
        for p in split_passages(doc.text[start:end], max_chars):
            yield page, Passage(start + p.start, start + p.end, p.text)


def _forget(report: AddReport, seen: dict[str, str], marks: tuple[int, int, int, int]) -> None:
    """Undo the bookkeeping of a file whose writes were rolled back."""
    del report.added[marks[0] :], report.replaced[marks[1] :], report.skipped[marks[2] :]
    for doc_id in list(seen)[marks[3] :]:  # dicts keep insertion order
        del seen[doc_id]


def _progress(files: list[Path], show: bool) -> Any:
    if not show:
        return files
    from tqdm import tqdm

    return tqdm(files, unit="file", desc="index", mininterval=0.5)
