"""The Reader: questions and texts in, answers with exact character offsets out.

text -> windows (windows.py) -> backend (backends.py) -> spans (decode.py) -> Prediction (prediction.py)
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.base import Backend
from spanqa.backends.load import load_backend
from spanqa.backends.model_dir import (
    input_spec,
    load_tokenizer,
    max_positions,
    read_card,
    read_config,
    resolve_model,
)
from spanqa.errors import InputError, check_positive, check_text
from spanqa.prediction import Answer, Prediction
from spanqa.reading.bucketing import BATCH_SIZE, length_batches
from spanqa.reading.calibration import Calibrator
from spanqa.reading.decode import best_spans, char_span
from spanqa.reading.windows import Windower, Windows, pad_batch, pad_offsets
from spanqa.retrieval.plan import ReadPlan, Retrieval, as_retrieval, plan_reads

DEFAULT_MAX_SEQ_LEN = 384
DEFAULT_DOC_STRIDE = 128

Item = tuple[str, str] | tuple[str, Sequence[str]]


@dataclass
class _Pending:
    """What one question has gathered so far from the windows read for it."""

    spans: dict[tuple[int, int, int], float] = field(default_factory=dict)  # (doc, start, end) -> score
    null: float = math.inf
    logsumexp: float = -math.inf


class Reader:
    """Extractive QA over any Hugging Face extractive-QA checkpoint with a fast tokenizer."""

    def __init__(
        self,
        backend: Backend,
        tokenizer: Any,
        *,
        card: dict[str, Any] | None = None,
        model_dir: Path | None = None,
        pad_id: int = 0,
        max_positions: int = 512,
        token_types: bool = True,
    ):
        self.backend = backend
        self.tokenizer = tokenizer
        self.card = card or {}
        self.model_dir = model_dir
        self.pad_id = pad_id
        self.max_positions = max_positions
        # False for models with fewer than two token types (model_dir.input_spec): their batches get zeros.
        self.token_types = token_types
        self.calibrator = Calibrator.from_card(self.card)
        self._windowers: dict[tuple[int, int], Windower] = {}  # one per (window length, stride)
        self._tokenizer_lock = threading.Lock()  # shared by those windowers: they share the tokenizer

    @classmethod
    def load(
        cls, model: str | os.PathLike | None = None, backend: str = "torch", *, threads: int | None = None
    ) -> Reader:
        """Load a model directory (None: spanqa's default model) with the named backend."""
        model_dir = resolve_model(model)
        config = read_config(model_dir)
        tokenizer = load_tokenizer(model_dir)
        pad_id, token_types = input_spec(config)
        return cls(
            load_backend(backend, model_dir, threads),
            tokenizer,
            card=read_card(model_dir),
            model_dir=model_dir,
            pad_id=pad_id,
            max_positions=max_positions(config),
            token_types=token_types,
        )

    @property
    def null_threshold(self) -> float:
        value = self.card.get("null_threshold")
        return float(value) if value is not None else 0.0

    @property
    def max_seq_len(self) -> int:
        return int(self.card.get("max_seq_len") or min(DEFAULT_MAX_SEQ_LEN, self.max_positions))

    def answer(
        self,
        question: str,
        context: str | None = None,
        *,
        contexts: Sequence[str] | None = None,
        top_k: int = 1,
        max_answer_len: int = 30,
        null_threshold: float | None = None,
        max_seq_len: int | None = None,
        doc_stride: int = DEFAULT_DOC_STRIDE,
        retrieve: str | Retrieval = "auto",
    ) -> Prediction:
        """Answer one question about one text (`context`) or several (`contexts`, answers carry `doc`).

        `retrieve` ("auto", "always", "never" or a Retrieval): read only the best BM25 passages of long
        texts (see docs/index.md); answer offsets always index the caller's text.
        """
        if (context is None) == (contexts is None):
            raise InputError("give exactly one of context or contexts")
        item: Item = (question, context) if context is not None else (question, list(contexts or []))
        return self.answer_batch(
            [item],
            top_k=top_k,
            max_answer_len=max_answer_len,
            null_threshold=null_threshold,
            max_seq_len=max_seq_len,
            doc_stride=doc_stride,
            retrieve=retrieve,
        )[0]

    def answer_batch(
        self,
        items: Iterable[Item],
        *,
        batch_size: int = BATCH_SIZE,
        top_k: int = 1,
        max_answer_len: int = 30,
        null_threshold: float | None = None,
        max_seq_len: int | None = None,
        doc_stride: int = DEFAULT_DOC_STRIDE,
        progress: bool = False,
        retrieve: str | Retrieval = "auto",
        calibrated: bool = True,
    ) -> list[Prediction]:
        """Answer many (question, context) pairs; windows of all of them are batched by length.

        Results come back in input order and equal what `answer` gives for each pair alone.
        `calibrated=False` gives raw scores (each answer's softmax share) instead of the model's
        calibrated probabilities; evaluation and tuning read the raw features from them.
        """
        reading = self.reading(
            items,
            batch_size=batch_size,
            top_k=top_k,
            max_answer_len=max_answer_len,
            null_threshold=null_threshold,
            max_seq_len=max_seq_len,
            doc_stride=doc_stride,
            retrieve=retrieve,
            calibrated=calibrated,
        )
        bar = _progress(len(reading.windows), progress)
        while rows := reading.step():
            bar.update(rows)
        bar.close()
        return reading.predictions()

    def reading(
        self,
        items: Iterable[Item],
        *,
        batch_size: int = BATCH_SIZE,
        top_k: int = 1,
        max_answer_len: int = 30,
        null_threshold: float | None = None,
        max_seq_len: int | None = None,
        doc_stride: int = DEFAULT_DOC_STRIDE,
        retrieve: str | Retrieval = "auto",
        calibrated: bool = True,
    ) -> Reading:
        """`answer_batch` one forward pass at a time, for callers that interleave or abandon work (the HTTP
        service): the items are checked and windowed now; `Reading.step()` runs the next pass."""
        _check_options(top_k, max_answer_len, batch_size)
        items = list(items)
        _check_items(items)  # the caller's texts, before anything (retrieval included) tokenizes them
        windower = self._windower(max_seq_len, doc_stride)
        plan = plan_reads(items, windower, as_retrieval(retrieve))  # long texts -> their best passages
        reads = _reads(plan.items)  # (item, doc, question, context) for every text to read
        windows = windower([r[2] for r in reads], [r[3] for r in reads])
        threshold = self.null_threshold if null_threshold is None else float(null_threshold)
        calibrator = self.calibrator if calibrated else Calibrator()
        return Reading(self, plan, reads, windows, batch_size, top_k, max_answer_len, threshold, calibrator)

    def _windower(self, max_seq_len: int | None, doc_stride: int) -> Windower:
        length = max_seq_len or self.max_seq_len
        if length > self.max_positions:
            raise InputError(f"max_seq_len={length} is more than this model's {self.max_positions} positions")
        key = (length, doc_stride)
        if key not in self._windowers:
            self._windowers[key] = Windower(self.tokenizer, length, doc_stride, self._tokenizer_lock)
        return self._windowers[key]

    @staticmethod
    def _finish(p: _Pending, item: Item, top_k: int, threshold: float, calibrator: Calibrator) -> Prediction:
        ranked = sorted(p.spans.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        if not ranked:  # no window had a valid span (e.g. max_answer_len shorter than any token)
            return Prediction([], True, float("-inf"))
        total = float(np.logaddexp(p.logsumexp, p.null))
        multi = not isinstance(item[1], str)
        answers = []
        for (doc, a, b), score in ranked:
            context = item[1][doc] if multi else item[1]
            prob = calibrator.score(score - p.null, score - total)
            answers.append(Answer(context[a:b], a, b, prob, doc if multi else None))
        diff = ranked[0][1] - p.null
        return Prediction(answers, bool(diff < threshold), float(diff))


class Reading:
    """One answer_batch call in steps: `step()` runs one forward pass (a length batch of windows) and returns
    how many windows it read, 0 when all are read; then `predictions()`. Dropping a Reading part-way
    costs nothing more: nothing runs between steps."""

    def __init__(
        self,
        reader: Reader,
        plan: ReadPlan,
        reads: list[tuple[int, int, str, str]],
        windows: Windows,
        batch_size: int,
        top_k: int,
        max_answer_len: int,
        threshold: float,
        calibrator: Calibrator,
    ):
        self.reader = reader
        self.plan = plan
        self.reads = reads  # (item, doc, question, text) of every text read, after retrieval
        self.windows = windows
        self.top_k, self.max_answer_len = top_k, max_answer_len
        self.threshold, self.calibrator = threshold, calibrator
        self.batches = length_batches(windows.lengths(), batch_size)
        self.done = 0  # batches run so far
        self.pending = [_Pending() for _ in plan.items]

    def next_cost(self) -> int:
        """Tokens (rows x padded length) the next step makes the model read; 0 when none is left."""
        if self.done == len(self.batches):
            return 0
        index = self.batches[self.done]
        return len(index) * max(len(self.windows.ids[w]) for w in index)

    def step(self) -> int:
        if self.done == len(self.batches):
            return 0
        reader, windows, reads = self.reader, self.windows, self.reads
        index = self.batches[self.done]
        batch = pad_batch(windows, index, reader.pad_id, reader.token_types)
        start, end = reader.backend.run({k: batch[k] for k in reader.backend.input_names})
        offsets = pad_offsets(windows, index, batch["input_ids"].shape[1])
        spans = best_spans(
            start, end, offsets[:, :, 0] >= 0, top_k=2 * self.top_k + 2, max_answer_len=self.max_answer_len
        )
        for row, w in enumerate(index):
            item, doc, _, context = reads[windows.item[w]]
            _gather(self.pending[item], doc, context, offsets[row], spans, row)
        self.done += 1
        return len(index)

    def predictions(self) -> list[Prediction]:
        """The answers, in the caller's order, once every step has run."""
        if self.done != len(self.batches):
            raise RuntimeError("Reading.predictions() before every step has run")
        items = self.plan.items
        return self.plan.restore(
            [
                Reader._finish(p, items[i], self.top_k, self.threshold, self.calibrator)
                for i, p in enumerate(self.pending)
            ]
        )


def _gather(p: _Pending, doc: int, context: str, offsets: np.ndarray, spans: Any, row: int) -> None:
    p.null = min(p.null, float(spans.null[row]))
    p.logsumexp = float(np.logaddexp(p.logsumexp, spans.logsumexp[row]))
    for s, e, score in zip(spans.starts[row], spans.ends[row], spans.scores[row]):
        if not np.isfinite(score):
            break
        chars = char_span(context, offsets, int(s), int(e))
        if chars is None:
            continue
        key = (doc, *chars)
        if score > p.spans.get(key, -math.inf):  # the same span seen in two overlapping windows counts once
            p.spans[key] = float(score)


def _check_items(items: list[Item]) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InputError(f"item {i}: expected a (question, context) pair")
        question, context = item
        check_text(question, "question", i)
        # bytes are a Sequence too: anything but a list or tuple is one context, refused unless a str
        single = not isinstance(context, list | tuple)
        docs = [context] if single else context
        if not docs:
            raise InputError(f"item {i}: contexts must be a non-empty list of strings")
        for d, text in enumerate(docs):
            check_text(text, "context" if single else f"contexts[{d}]", i)


def _reads(items: list[Item]) -> list[tuple[int, int, str, str]]:
    """(item, doc, question, text) for every text of checked items (retrieval keeps them valid)."""
    reads = []
    for i, (question, context) in enumerate(items):
        docs = [context] if isinstance(context, str) else context
        reads += [(i, d, question, text) for d, text in enumerate(docs)]
    return reads


def _check_options(top_k: int, max_answer_len: int, batch_size: int) -> None:
    for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len), ("batch_size", batch_size)):
        check_positive(name, value)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="win", desc="read", smoothing=0.1, mininterval=1.0)
