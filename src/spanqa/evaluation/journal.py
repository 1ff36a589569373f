"""Resumable runs over many questions: results are appended to a journal as they come.

`spanqa evaluate` and `spanqa predict` read thousands of questions (minutes on a CPU). They read them in
chunks and append each chunk's results to a JSON Lines journal whose first line names what the results depend
on (model content, backend, data file, reading options). A rerun of the same command finds the journal,
checks that line, and reads only the questions not in it; a journal for anything else is ignored and replaced.
An interrupted write can leave a torn last line: it is dropped, and those questions are read again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHUNK = 256  # questions per chunk: a few seconds of work lost at most, batches still full
# The bar moves within a chunk too: read_chunk reports (windows read, windows in all) as batches finish.
ChunkProgress = Callable[[int, int], None]


def data_identity(path: str | os.PathLike) -> dict[str, Any]:
    """The data file as the journal key sees it: a changed file starts over."""
    p = Path(path).resolve()
    st = p.stat()
    return {"data": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def model_identity(model_dir: Path) -> str:
    """A hash of the model's content, so retraining into the same directory starts over."""
    from spanqa.backends.model_cache import model_fingerprint

    return model_fingerprint(model_dir)


class Journal:
    """One run's journal: `key` (JSON-able) on the first line, then one record (a dict with "id") per line."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path = Path(path)
        self.key = json.loads(json.dumps(key))  # as it will read back

    @classmethod
    def in_cache(cls, kind: str, key: dict[str, Any]) -> Journal:
        from spanqa.backends.model_cache import cache_root

        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return cls(cache_root() / "runs" / f"{kind}-{digest}.jsonl", key)

    def load(self) -> dict[str, dict[str, Any]]:
        """The records of a previous run with the same key, by id; {} when there is none."""
        try:
            lines = self.path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            if json.loads(lines[0]) != {"journal": self.key}:
                return {}
        except ValueError:
            return {}
        done = {}
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                break  # a torn last line: what follows it was never written
            done[record["id"]] = record
        return done

    def start(self, done: dict[str, dict[str, Any]]) -> None:
        """Rewrite the journal with its key and the records kept (drops a torn line or another run's)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"journal": self.key}) + "\n")
            for record in done.values():
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def run_resumable(
    ids: Sequence[str],
    read_chunk: Callable[[list[int], ChunkProgress], list[dict[str, Any]]],
    journal: Journal | None,
    *,
    progress: bool = True,
    desc: str = "read",
) -> list[dict[str, Any]]:
    """Records for every id, in order: taken from the journal where a previous run left them, else made by
    `read_chunk(indexes, report)` (one record per index, each with its "id") and journaled chunk by chunk.

    `report(done, total)`, called by read_chunk as its work advances (Reader.answer_batch's `progress`),
    moves the bar within the chunk, so it never sits still for a whole chunk of questions.
    """
    from tqdm import tqdm

    if len(set(ids)) != len(ids):
        journal = None  # records are matched to questions by id: a file repeating ids is read whole
    results: list[dict[str, Any] | None] = [None] * len(ids)
    if journal is not None:
        previous = journal.load()
        for i, qid in enumerate(ids):
            results[i] = previous.get(qid)
        journal.start({r["id"]: r for r in results if r is not None})
        resumed = sum(r is not None for r in results)
        if resumed:
            print(f"spanqa: resuming: {resumed} of {len(ids)} questions already read", file=sys.stderr)
    todo = [i for i, r in enumerate(results) if r is None]
    with tqdm(
        total=len(ids),
        initial=len(ids) - len(todo),
        unit="q",
        desc=desc,
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            before = bar.n

            def report(done: int, total: int, before: int = before, size: int = len(chunk)) -> None:
                shown = before + (size * done // total if total else 0)
                if shown > bar.n:
                    bar.update(shown - bar.n)

            records = read_chunk(chunk, report)
            if journal is not None:
                journal.append(records)
            for i, record in zip(chunk, records):
                results[i] = record
            if bar.n < before + len(chunk):  # whatever the reports left (none at all from some read_chunks)
                bar.update(before + len(chunk) - bar.n)
    return results  # type: ignore[return-value]  # every slot is filled by now
