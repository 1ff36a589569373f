"""The index's SQLite schema, and the upgrade of an index written by an earlier spanqa.

Version 1: documents (id, source, sha256, text, added) and their passages.
Version 2 adds each document's format, page map (JSON [[start, end], ...], NULL without pages) and the
hash of its file's bytes, and each passage's page. The upgrade only adds columns (defaults: format "text",
no pages), in one transaction, so an index is either wholly version 1 or wholly version 2.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from spanqa.errors import InputError
from spanqa.retrieval.bm25 import FTS_TOKENIZER
from spanqa.retrieval.passages import DEFAULT_PASSAGE_CHARS

SCHEMA_VERSION = "2"

_TABLES = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, sha256 TEXT NOT NULL, text TEXT NOT NULL, added TEXT NOT NULL,
    format TEXT NOT NULL DEFAULT 'text', pages TEXT, file_sha256 TEXT
);
CREATE TABLE passages (
    id INTEGER PRIMARY KEY, doc TEXT NOT NULL, n INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, page INTEGER
);
CREATE INDEX passages_doc ON passages (doc, n);
CREATE VIRTUAL TABLE passage_text USING fts5(text, tokenize='{FTS_TOKENIZER}');
"""

_UPGRADES = {
    "1": """
ALTER TABLE documents ADD COLUMN format TEXT NOT NULL DEFAULT 'text';
ALTER TABLE documents ADD COLUMN pages TEXT;
ALTER TABLE documents ADD COLUMN file_sha256 TEXT;
ALTER TABLE passages ADD COLUMN page INTEGER;
UPDATE meta SET value = '2' WHERE key = 'schema';
""",
}


def open_schema(db: sqlite3.Connection, path: Path, create: bool) -> None:
    """Create the tables in an empty database, or upgrade an index of an earlier version; refuse anything
    else. `db` is in autocommit mode (isolation_level=None)."""
    if not _tables(db) and create:
        _in_transaction(
            db,
            lambda: (
                _tables(db)  # another process may have created it since we looked
                or _run(
                    db,
                    f"{_TABLES}INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}');\n"
                    f"INSERT INTO meta VALUES ('passage_chars', '{DEFAULT_PASSAGE_CHARS}');\n",
                )
            ),
        )
        return
    version = _version(db)
    if version == SCHEMA_VERSION:
        return
    if version not in _UPGRADES:
        if version is not None and version.isdigit() and int(version) > int(SCHEMA_VERSION):
            raise InputError(f"{path} is an index of a newer spanqa (schema {version}); upgrade spanqa")
        raise InputError(f"{path} is not a spanqa index (or one of another version)")
    try:
        _in_transaction(db, lambda: _upgrade(db))
    except sqlite3.OperationalError as e:
        if "readonly" in str(e) or "read-only" in str(e):
            raise InputError(
                f"{path} was written by an earlier spanqa (schema {version}); open it once with write "
                "access to upgrade it"
            ) from None
        raise


def _upgrade(db: sqlite3.Connection) -> None:
    """From the version found (re-read under the write lock: another process may have upgraded it) to now."""
    version = _version(db)
    while version != SCHEMA_VERSION:
        _run(db, _UPGRADES[version])
        version = _version(db)


def _run(db: sqlite3.Connection, script: str) -> None:
    """Statements one by one: executescript would commit the open transaction first."""
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


def _in_transaction(db: sqlite3.Connection, work) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        work()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _version(db: sqlite3.Connection) -> str | None:
    if "meta" not in _tables(db):
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return row[0] if row else None
