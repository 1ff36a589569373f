"""Rows in, records out: what one question of a cluster job is, and what comes back for it.

A row is `{"id", "question", "context"}` or `{"id", "question", "contexts": [...]}`, or a row whose `json`
column holds one such object as text (a line of a JSON Lines file, parsed here so that one bad line is one
bad record, not a failed job). Every row gives exactly one record: the answers, or an `error` naming the id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from spanqa.backends.base import ONNX_INT8_BACKENDS
from spanqa.errors import InputError, check_positive, check_text
from spanqa.reading.bucketing import BATCH_SIZE

log = logging.getLogger(__name__)

JSON_COLUMN = "json"  # a row given as one JSON object in text (JSON Lines read line by line)
# Backends whose logits for a window depend on the other windows of its forward pass: ONNX Runtime's dynamic
# int8 scales activations by the largest value in the whole batch (padding included). OpenVINO's int8 scales
# each token on its own: its answers depend on the batch only through float rounding, as fp32's do.
BATCH_DEPENDENT_BACKENDS = ONNX_INT8_BACKENDS


@dataclass(frozen=True)
class ReadOptions:
    """How each question is read: `Reader.answer_batch`'s options.

    `batch_size` (windows per forward pass) None: 1 for batch-dependent backends (onnx-int8), so that an
    answer never depends on which other questions Ray put in the same block, else the reader's default.
    """

    top_k: int = 1
    max_answer_len: int = 30
    null_threshold: float | None = None
    max_seq_len: int | None = None
    doc_stride: int = 128
    retrieve: str = "auto"
    batch_size: int | None = None

    def __post_init__(self) -> None:  # checked on the driver: a bad option is one error, not one per row
        from spanqa.retrieval.plan import as_retrieval

        for name in ("top_k", "max_answer_len", "doc_stride"):
            check_positive(name, getattr(self, name))
        for name in ("max_seq_len", "batch_size"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        as_retrieval(self.retrieve)

    def for_backend(self, backend: str) -> dict[str, Any]:
        """The keyword arguments of `answer_batch` for a reader running `backend`."""
        options = asdict(self)
        if options["batch_size"] is None:
            options["batch_size"] = 1 if backend in BATCH_DEPENDENT_BACKENDS else BATCH_SIZE
        return options


def record_schema() -> Any:
    """The Arrow schema of answer records: one per row, the same in every block (and Parquet file)."""
    import pyarrow as pa

    answer = pa.struct(
        [
            ("text", pa.string()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("score", pa.float64()),
            ("doc", pa.int64()),  # the index in `contexts`; null for a row with one `context`
        ]
    )
    return pa.schema(
        [
            ("id", pa.string()),
            ("answers", pa.list_(answer)),
            ("no_answer", pa.bool_()),
            ("answerable", pa.float64()),  # the probability that the text answers the question
            ("answerable_prior", pa.float64()),  # the prior it was computed for
            ("null_score_diff", pa.float64()),  # null when no span was found (-inf locally)
            ("error", pa.string()),  # null for an answered row
        ]
    )


def answer_rows(reader: Any, rows: list[dict[str, Any]], options: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per row, in order: all valid rows read in one `answer_batch` call, bad rows as errors."""
    records: list[dict[str, Any] | None] = [None] * len(rows)
    items, where = [], []
    for i, row in enumerate(rows):
        try:
            qid, item = parse_row(row)
        except InputError as e:
            records[i] = error_record(_row_id(row), str(e))
            continue
        records[i] = {"id": qid}
        items.append(item)
        where.append(i)
    try:
        predictions = reader.answer_batch(items, **options) if items else []
    except Exception:  # e.g. a question too long for a window: find the row, answer the others
        predictions = [_answer_alone(reader, item, options) for item in items]
    for i, pred in zip(where, predictions):
        qid = records[i]["id"]  # type: ignore[index]
        if isinstance(pred, str):
            records[i] = error_record(qid, pred)
        else:
            records[i] = {"id": qid, **pred.to_dict(), "error": None}
            for a in records[i]["answers"]:  # type: ignore[index]
                a.setdefault("doc", None)
    return records  # type: ignore[return-value]  # every slot is filled


def _answer_alone(reader: Any, item: Any, options: dict[str, Any]) -> Any:
    """The item's Prediction, or the message of what went wrong with it (the job goes on)."""
    try:
        return reader.answer_batch([item], **options)[0]
    except InputError as e:
        return str(e)
    except Exception as e:  # a failure no check foresaw: this row's record says so; the others are read
        log.exception("reading one row failed")
        return f"internal error ({type(e).__name__}): {e}"


def parse_row(row: dict[str, Any]) -> tuple[str, tuple[str, Any]]:
    """(id, (question, context or contexts)) of a valid row, else InputError saying what is wrong."""
    if JSON_COLUMN in row and "question" not in row:
        row = _json_object(row[JSON_COLUMN])
    qid = _row_id(row)
    if qid is None:
        raise InputError("row has no id")
    question = row.get("question")
    if question is None:
        raise InputError("row has no question")
    check_text(question, "question")
    context, contexts = row.get("context"), row.get("contexts")
    if (context is None) == (contexts is None):
        raise InputError("give exactly one of context or contexts")
    if context is not None:
        check_text(context, "context")
        return qid, (question, context)
    if not isinstance(contexts, list | tuple) or not contexts:
        raise InputError("contexts must be a non-empty list of strings")
    for d, text in enumerate(contexts):
        check_text(text, f"contexts[{d}]")
    return qid, (question, list(contexts))


def _json_object(line: Any) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except (TypeError, ValueError) as e:
        raise InputError(f"not a JSON object: {_snippet(line)} ({e})") from None
    if not isinstance(row, dict):
        raise InputError(f"not a JSON object: {_snippet(line)}")
    return row


def _row_id(row: dict[str, Any]) -> str | None:
    if JSON_COLUMN in row and "question" not in row:
        try:
            row = json.loads(row[JSON_COLUMN])
        except (TypeError, ValueError):
            return None
        if not isinstance(row, dict):
            return None
    qid = row.get("id")
    if isinstance(qid, bool) or not isinstance(qid, str | int) or qid == "":
        return None
    return str(qid)


def error_record(qid: str | None, message: str) -> dict[str, Any]:
    what = f"id {qid}" if qid is not None else "a row without an id"
    log.debug("%s: %s", what, message)  # the record carries it; a log line per row would flood the driver
    return {
        "id": qid,
        "answers": [],
        "no_answer": None,
        "answerable": None,
        "answerable_prior": None,
        "null_score_diff": None,
        "error": message,
    }


def is_blank_line(row: dict[str, Any]) -> bool:
    """An empty line of a JSON Lines file: skipped, as JSON Lines readers do."""
    return JSON_COLUMN in row and "question" not in row and not str(row[JSON_COLUMN] or "").strip()


def _snippet(text: Any, limit: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def local_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record as `spanqa predict` writes it locally: no `error` when answered, no `doc` when single."""
    if record.get("error") is not None:
        return {"id": record["id"], "error": record["error"]}
    answers = [{k: v for k, v in a.items() if not (k == "doc" and v is None)} for a in record["answers"]]
    return {
        "id": record["id"],
        "answers": answers,
        "no_answer": record["no_answer"],
        "answerable": record["answerable"],
        "answerable_prior": record["answerable_prior"],
        "null_score_diff": record["null_score_diff"],
    }
