"""Running a reader over a SQuAD-format file: predictions, no-answer scores, and the official metrics.

The model is run once per evaluation. What each question needs afterwards (its top answer and the raw score
features) is kept in a `QuestionResult`; decisions are taken from them (`decided`) under a calibration and a
prior, so that tuning and the F1-against-prior curve try many without running the model again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from spanqa.errors import InputError
from spanqa.evaluation.journal import ChunkProgress, Journal, run_resumable
from spanqa.evaluation.metrics import (
    answerability_auc,
    compute_exact,
    get_raw_scores,
    gold_texts,
    squad_v2_eval,
)
from spanqa.evaluation.squad import Example
from spanqa.prediction import Prediction
from spanqa.reading.bucketing import BATCH_SIZE
from spanqa.reading.calibration import Calibration, expected_calibration_error

ECE_BINS = 10
# The priors at which `f1_by_prior` reports F1: what a user choosing a prior picks from.
PRIOR_GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


@dataclass
class QuestionResult:
    """What evaluation keeps of one question: its gold answers, the top answer and its raw features.

    `no_answer` and `answerable` are the decision and probability under some calibration and prior; they
    are filled in by `decided`, so tuning can try other calibrations without running the model again.
    """

    id: str
    answers: list[str]  # gold answer texts; empty for an unanswerable question
    text: str  # the top answer, decided or not ("" when the model found no span at all)
    features: dict[str, float]  # the raw scores of the top answer (calibration.py names them)
    no_answer: bool = True
    answerable: float = 0.0

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)  # as the official script decides it

    @property
    def has_span(self) -> bool:
        return math.isfinite(self.features.get("null_score_diff", -math.inf))

    @property
    def predicted(self) -> str:
        return "" if self.no_answer else self.text

    @property
    def top_correct(self) -> bool:
        """Whether the top answer, given as an answer, would be an exact match; never for no-answer gold."""
        return self.has_answer and max(compute_exact(g, self.text) for g in gold_texts(self.answers)) == 1


def read_questions(
    reader: Any,
    examples: Sequence[Example],
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    journal: Journal | None = None,
    **reading: Any,
) -> list[QuestionResult]:
    """Run the reader over the examples and keep, for each question, what evaluation and tuning need.

    Decisions are not kept: `decided` takes them under a calibration and a prior (or raw threshold).
    `reading` holds Reader.answer_batch options. With a `journal`, results are kept as they come and a
    rerun continues an interrupted run (spanqa.evaluation.journal).
    """
    if not examples:
        raise InputError("no questions to evaluate")
    drop = ("top_k", "null_threshold", "answerable_prior")  # only the top answer's raw scores are kept
    reading = {k: v for k, v in reading.items() if k not in drop}

    def read_chunk(indexes: list[int], report: ChunkProgress) -> list[dict[str, Any]]:
        chunk = [examples[i] for i in indexes]
        preds = reader.answer_batch(
            [(ex.question, ex.context) for ex in chunk],
            batch_size=batch_size,
            top_k=1,
            progress=report,
            **reading,
        )
        return [asdict(_result(ex, pred)) for ex, pred in zip(chunk, preds)]

    records = run_resumable([ex.id for ex in examples], read_chunk, journal, progress=progress)
    return [QuestionResult(**r) for r in records]


def _result(ex: Example, pred: Prediction) -> QuestionResult:
    top = pred.answers[0] if pred.answers else None
    return QuestionResult(
        id=ex.id,
        answers=[a.text for a in ex.answers],
        text=top.text if top is not None else "",
        features=dict(pred.features) or {"null_score_diff": -math.inf},
    )


def decided(
    results: Sequence[QuestionResult],
    calibration: Calibration,
    *,
    prior: float | None = None,
    threshold: float | None = None,
) -> list[QuestionResult]:
    """The results with `answerable` at `prior` (None: the card's default) and the reader's decision:
    `answerable < 0.5`, or `null_score_diff < threshold` when a raw threshold is given."""
    out = []
    for r in results:
        p = calibration.answerable_prob(r.features, prior)
        if threshold is not None:
            no = not r.has_span or r.features["null_score_diff"] < threshold
        else:
            no = not r.has_span or p < 0.5
        out.append(replace(r, answerable=p, no_answer=bool(no)))
    return out


def predictions(results: Sequence[QuestionResult]) -> dict[str, str]:
    """The official predictions format: id -> answer text, "" for no answer."""
    return {r.id: r.predicted for r in results}


def na_probs(results: Sequence[QuestionResult]) -> dict[str, float]:
    """The official no-answer probabilities format: id -> probability that the question has no answer."""
    return {r.id: 1.0 - r.answerable for r in results}


def span_scores(results: Sequence[QuestionResult], calibration: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """The top answers' scores of the answerable questions (what a span score is about), and whether
    each is an exact match. Questions where the model found no span have no top answer and are left out."""
    kept = [r for r in results if r.has_answer and r.has_span]
    scores = np.array([calibration.span_score(r.features) for r in kept], dtype=np.float64)
    correct = np.array([r.top_correct for r in kept], dtype=np.float64)
    return scores, correct


def answerable_probs(
    results: Sequence[QuestionResult], calibration: Calibration, prior: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`answerable` of every question at `prior` (None: the tuning prior), and whether it has an answer."""
    prior = calibration.tuning_prior if prior is None else prior
    probs = np.array([calibration.answerable_prob(r.features, prior) for r in results], dtype=np.float64)
    return probs, np.array([r.has_answer for r in results], dtype=np.float64)


def f1_by_prior(
    results: Sequence[QuestionResult], calibration: Calibration, priors: Sequence[float] = PRIOR_GRID
) -> dict[str, float]:
    """SQuAD 2.0 F1 of the decision `answerable < 0.5` at each prior: the curve a user picks a prior on."""
    answered_f1, has = _answered_f1(results)
    out = {}
    for prior in priors:
        answered = np.array([calibration.answerable_prob(r.features, prior) >= 0.5 for r in results])
        answered &= np.array([r.has_span for r in results], dtype=bool)
        out[f"{prior:g}"] = _f1(answered, answered_f1, has)
    return out


def f1_by_threshold(results: Sequence[QuestionResult], thresholds: Sequence[float]) -> dict[str, float]:
    """SQuAD 2.0 F1 of the raw rule `null_score_diff >= threshold` at each threshold (the frontier)."""
    answered_f1, has = _answered_f1(results)
    diff = np.array([r.features.get("null_score_diff", -math.inf) for r in results])
    return {f"{t:g}": _f1(diff >= t, answered_f1, has) for t in thresholds}


def _answered_f1(results: Sequence[QuestionResult]) -> tuple[np.ndarray, np.ndarray]:
    _, f1_raw = get_raw_scores({r.id: r.answers for r in results}, {r.id: r.text for r in results})
    answered_f1 = np.array([f1_raw[r.id] for r in results])
    return answered_f1, np.array([r.has_answer for r in results], dtype=bool)


def _f1(answered: np.ndarray, answered_f1: np.ndarray, has: np.ndarray) -> float:
    """F1 in percent when the `answered` questions give their top answer and the rest say no answer."""
    per_question = np.where(answered, np.where(has, answered_f1, 0.0), (~has).astype(np.float64))
    return float(100.0 * per_question.mean()) if len(per_question) else 0.0


def evaluate_results(results: Sequence[QuestionResult], calibration: Calibration) -> dict[str, Any]:
    """The official SQuAD 2.0 metrics of decided results (see `decided`), plus the calibration measures.

    Official keys: exact, f1, total, HasAns_* / NoAns_* (when the data has such questions), best_exact,
    best_exact_thresh, best_f1, best_f1_thresh (thresholds on the na_probs: 1 - answerable). Added:
    `HasAns_auc` (of answerable), `span_ece` (span scores on answerable questions), `answerable_ece`
    (answerable at the tuning prior), `f1_by_prior` (F1 of the decision at each prior of PRIOR_GRID).
    """
    golds = {r.id: r.answers for r in results}
    metrics: dict[str, Any] = dict(squad_v2_eval(golds, predictions(results), na_probs(results)))
    metrics["HasAns_auc"] = answerability_auc(
        [r.features.get("null_score_diff", -math.inf) for r in results]
        if not calibration.calibrated
        else [calibration.answerable_logit(r.features) for r in results],
        [r.has_answer for r in results],
    )
    metrics["span_ece"] = expected_calibration_error(*span_scores(results, calibration), bins=ECE_BINS)
    metrics["answerable_ece"] = expected_calibration_error(
        *answerable_probs(results, calibration), bins=ECE_BINS
    )
    metrics["f1_by_prior"] = f1_by_prior(results, calibration)
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable table of the metrics."""
    lines = []
    for key, value in metrics.items():
        if value is None:
            shown = "n/a"
        elif isinstance(value, int):
            shown = str(value)
        elif isinstance(value, dict):
            shown = "  ".join(f"{k}:{v:.1f}" for k, v in value.items())
        elif key.endswith("_thresh") or key.endswith("ece") or key in ("HasAns_auc", "answerable_prior"):
            shown = f"{value:.4f}"
        else:
            shown = f"{value:.2f}"
        lines.append(f"{key:<18} {shown}")
    return "\n".join(lines)
