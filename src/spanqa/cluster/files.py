"""Questions in and predictions out for a cluster job, on a local path or any filesystem pyarrow opens
(s3://, gs://, hdfs://, ...).

In: SQuAD JSON (read on the driver, then spread over the cluster), JSON Lines (`.jsonl`, `.ndjson`: read as
text, each line parsed by the worker, so one bad line is one error record) or Parquet (a file or a folder).
Out: one JSON Lines (`.jsonl`, `.json`) or Parquet (`.parquet`) file, written as the answers arrive, in the
order of the input, under a temporary name and renamed when complete (local paths).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.cluster.rows import JSON_COLUMN, local_record, record_schema
from spanqa.errors import InputError

JSON_LINES = (".jsonl", ".ndjson")
# Reading is light next to the model, and the workers may hold every CPU of a small cluster: reads that
# waited for a free CPU would wait for ever (the workers wait for their rows), so they reserve none.
READ_ARGS = {"num_cpus": 0}
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class WriteSummary:
    rows: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)  # "id X: message" for the first few


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def read_questions(path: str) -> Any:
    """A Ray Dataset of question rows: `{id, question, context | contexts}`, or `{json}` for JSON Lines."""
    import ray.data

    suffix = _suffix(path)
    if not is_uri(path) and not Path(path).exists():
        raise InputError(f"questions not found: {path}")
    folder = Path(path).is_dir() if not is_uri(path) else suffix == ""  # s3://bucket/questions/
    if suffix == ".parquet" or folder:
        return _read_parquet(path)
    if suffix in JSON_LINES:
        return ray.data.read_text(path, **READ_ARGS).rename_columns({"text": JSON_COLUMN})
    if suffix == ".json":
        rows = _squad_rows(path)
        if rows is None:  # not one JSON document: JSON Lines named .json
            return ray.data.read_text(path, **READ_ARGS).rename_columns({"text": JSON_COLUMN})
        return ray.data.from_items(rows)
    raise InputError(f"{path}: give SQuAD JSON (.json), JSON Lines (.jsonl) or Parquet (.parquet) questions")


def _read_parquet(path: str) -> Any:
    """ray.data.read_parquet with reads that reserve no CPU. Ray 2.60's default (datasource v2) first
    lists the files in a task of its own that needs a whole CPU and takes no resource arguments; the older
    reader, still in Ray 2.60, lists them on the driver."""
    import ray.data

    context = ray.data.DataContext.get_current()
    before = context.use_datasource_v2
    context.use_datasource_v2 = False
    try:
        return ray.data.read_parquet(path, **READ_ARGS)
    finally:
        context.use_datasource_v2 = before


def _squad_rows(path: str) -> list[dict[str, Any]] | None:
    from spanqa.evaluation.squad import parse_squad

    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several JSON values: one per line
            return None
        raise InputError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    return [{"id": ex.id, "question": ex.question, "context": ex.context} for ex in parse_squad(doc, path)]


def _read_text(path: str) -> str:
    if not is_uri(path):
        from spanqa.retrieval.sources import read_text

        return read_text(path, "questions file")
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    with fs.open_input_stream(inner) as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not valid UTF-8 (byte {e.start})") from None


def output_format(out: str) -> str:
    """ "jsonl" or "parquet", from the name; checked before the job starts, so a bad --out fails at once."""
    fmt = OUTPUT_FORMATS.get(_suffix(out))
    if fmt is None:
        raise InputError(f"{out}: predictions are written as .jsonl or .parquet")
    if not is_uri(out):
        p = Path(out)
        if p.is_dir():
            raise InputError(f"cannot write {out}: it is a directory")
        if not p.absolute().parent.is_dir():
            raise InputError(f"cannot write {out}: directory {p.absolute().parent} does not exist")
    return fmt


def write_predictions(records: Any, out: str, keep_errors: int = 3) -> WriteSummary:
    """Stream the records of a Ray Dataset into one file, in input order; count the rows and errors."""
    fmt = output_format(out)
    summary = WriteSummary()
    sink, tmp = _open_output(out)
    writer = None
    try:
        with _ordered():
            for table in records.iter_batches(batch_size=None, batch_format="pyarrow"):
                _count(table, summary, keep_errors)
                if fmt == "parquet":
                    import pyarrow.parquet as pq

                    writer = writer or pq.ParquetWriter(sink, record_schema())
                    writer.write_table(table.cast(record_schema()))
                else:
                    lines = (json.dumps(local_record(r), ensure_ascii=False) for r in table.to_pylist())
                    sink.write("".join(line + "\n" for line in lines).encode("utf-8"))
        if fmt == "parquet":
            import pyarrow.parquet as pq

            writer = writer or pq.ParquetWriter(sink, record_schema())  # no rows: still a valid file
            writer.close()
        sink.close()
        if tmp is not None:
            os.replace(tmp, out)
    finally:
        if not sink.closed:
            sink.close()
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink()
    return summary


def _count(table: Any, summary: WriteSummary, keep: int) -> None:
    summary.rows += table.num_rows
    errors = table.column("error").to_pylist()
    ids = table.column("id").to_pylist()
    for qid, message in zip(ids, errors):
        if message is None:
            continue
        summary.errors += 1
        if len(summary.first_errors) < keep:
            summary.first_errors.append(f"id {qid}: {message}" if qid is not None else message)


def _open_output(out: str) -> tuple[Any, str | None]:
    import pyarrow as pa

    if is_uri(out):  # object stores publish a file when it is closed: no temporary name needed
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(out)
        return fs.open_output_stream(inner), None
    tmp = f"{out}.tmp"
    try:
        return pa.OSFile(tmp, "wb"), tmp
    except OSError as e:
        raise InputError(f"cannot write {out}: {e}") from None


class _ordered:
    """Ray Data hands blocks over as they finish; the output keeps the input's order instead."""

    def __enter__(self) -> None:
        from ray.data import DataContext

        self.options = DataContext.get_current().execution_options
        self.before = self.options.preserve_order
        self.options.preserve_order = True

    def __exit__(self, *exc: object) -> None:
        self.options.preserve_order = self.before


def _suffix(path: str) -> str:
    return Path(path.rstrip("/")).suffix.lower()
