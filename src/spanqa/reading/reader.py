"""The Reader: questions and texts in, answers with exact character offsets out.

text -> windows (windows.py) -> backend (backends/) -> spans (decode.py, steps.py) -> Prediction
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

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
from spanqa.prediction import Prediction
from spanqa.reading.bucketing import BATCH_SIZE
from spanqa.reading.calibration import Calibration, check_prior
from spanqa.reading.steps import Reading
from spanqa.reading.windows import Windower
from spanqa.retrieval.plan import Retrieval, as_retrieval, plan_reads

DEFAULT_MAX_SEQ_LEN = 384
DEFAULT_DOC_STRIDE = 128

Item = tuple[str, str] | tuple[str, Sequence[str]]


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
    def calibration(self) -> Calibration:
        """The card's calibrations, default prior and raw threshold (read from the card on each use, so
        an edited card takes effect at once)."""
        return Calibration.from_card(self.card)

    @property
    def null_threshold(self) -> float:
        """The card's raw threshold on null_score_diff (used only when a caller asks for raw thresholds,
        or by models without an answerable calibration)."""
        return self.calibration.null_threshold

    @property
    def answerable_prior(self) -> float:
        """The default prior that the text answers the question (the card's `answerable_prior`)."""
        return self.calibration.default_prior

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
        answerable_prior: float | None = None,
        max_seq_len: int | None = None,
        doc_stride: int = DEFAULT_DOC_STRIDE,
        retrieve: str | Retrieval = "auto",
    ) -> Prediction:
        """Answer one question about one text (`context`) or several (`contexts`, answers carry `doc`).

        `answerable_prior`: how likely the caller's questions are to be answered by their texts (default:
        the model card's); `no_answer` is `answerable < 0.5` at that prior. `null_threshold` instead
        decides on the raw `null_score_diff` (give one of the two).
        `retrieve` ("auto", "always", "never" or a Retrieval): read only the best BM25 passages of long
        texts (see docs/index.md); answer offsets always index the caller's text.
        """
        if (context is None) == (contexts is None):
            raise InputError("give exactly one of context or contexts")
        if isinstance(contexts, str | bytes):  # else each character would be read as a document
            raise InputError("contexts must be a list of strings; for one text, pass it as context")
        item: Item = (question, context) if context is not None else (question, list(contexts or []))
        return self.answer_batch(
            [item],
            top_k=top_k,
            max_answer_len=max_answer_len,
            null_threshold=null_threshold,
            answerable_prior=answerable_prior,
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
        answerable_prior: float | None = None,
        max_seq_len: int | None = None,
        doc_stride: int = DEFAULT_DOC_STRIDE,
        progress: bool | Callable[[int, int], None] = False,
        retrieve: str | Retrieval = "auto",
        calibrated: bool = True,
    ) -> list[Prediction]:
        """Answer many (question, context) pairs; windows of all of them are batched by length.

        Results come back in input order and equal what `answer` gives for each pair alone (with onnx-int8,
        up to dynamic quantization's per-batch scales: see the README).
        `progress`: True for a bar on stderr, or a function called with (windows read, windows in all).
        `calibrated=False` gives raw scores (each answer's softmax share among spans) instead of the
        model's calibrated probabilities; every prediction carries its raw `features` either way.
        """
        reading = self.reading(
            items,
            batch_size=batch_size,
            top_k=top_k,
            max_answer_len=max_answer_len,
            null_threshold=null_threshold,
            answerable_prior=answerable_prior,
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
        answerable_prior: float | None = None,
        max_seq_len: int | None = None,
        doc_stride: int = DEFAULT_DOC_STRIDE,
        retrieve: str | Retrieval = "auto",
        calibrated: bool = True,
    ) -> Reading:
        """`answer_batch` one forward pass at a time, for callers that interleave or abandon work (the HTTP
        service): the items are checked and windowed now; `Reading.step()` runs the next pass."""
        _check_options(top_k, max_answer_len, batch_size)
        decision = _decision(null_threshold, answerable_prior)
        items = list(items)
        _check_items(items)  # the caller's texts, before anything (retrieval included) tokenizes them
        windower = self._windower(max_seq_len, doc_stride)
        plan = plan_reads(items, windower, as_retrieval(retrieve))  # long texts -> their best passages
        reads = _reads(plan.items)  # (item, doc, question, context) for every text to read
        windows = windower([r[2] for r in reads], [r[3] for r in reads])
        calibration = self.calibration if calibrated else Calibration(null_threshold=self.null_threshold)
        return Reading(self, plan, reads, windows, batch_size, top_k, max_answer_len, decision, calibration)

    def _windower(self, max_seq_len: int | None, doc_stride: int) -> Windower:
        length = max_seq_len or self.max_seq_len
        if length > self.max_positions:
            raise InputError(f"max_seq_len={length} is more than this model's {self.max_positions} positions")
        key = (length, doc_stride)
        if key not in self._windowers:
            self._windowers[key] = Windower(self.tokenizer, length, doc_stride, self._tokenizer_lock)
        return self._windowers[key]


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


def _decision(null_threshold: object, answerable_prior: object) -> tuple[str, float | None]:
    """("threshold", t): no answer when null_score_diff < t; ("prior", p or None for the card's)."""
    if null_threshold is not None and answerable_prior is not None:
        raise InputError("give null_threshold (a raw threshold) or answerable_prior, not both")
    if null_threshold is not None:
        if (
            not isinstance(null_threshold, numbers.Real)
            or isinstance(null_threshold, bool)
            or math.isnan(null_threshold)
        ):  # nan compares false with everything: every question would get an answer
            raise InputError(
                f"null_threshold must be a number (or -inf / inf) or None, got {null_threshold!r}"
            )
        return "threshold", float(null_threshold)
    return "prior", None if answerable_prior is None else check_prior(answerable_prior)


def _check_options(top_k: int, max_answer_len: int, batch_size: int) -> None:
    for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len), ("batch_size", batch_size)):
        check_positive(name, value)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Reported:
    """Progress told to the caller's function: (windows read, windows in all) after each batch."""

    def __init__(self, total: int, report: Callable[[int, int], None]):
        self.total, self.done, self.report = total, 0, report
        report(0, total)  # the windows are made: the caller learns how much work there is

    def update(self, n: int) -> None:
        self.done += n
        self.report(self.done, self.total)

    def close(self) -> None:
        pass


def _progress(total: int, show: bool | Callable[[int, int], None]) -> Any:
    if callable(show):
        return _Reported(total, show)
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="win", desc="read", smoothing=0.1, mininterval=1.0)
