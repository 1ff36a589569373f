"""Running a reader over a SQuAD-format file: predictions, no-answer scores, and the official metrics.

The model is run once per evaluation. What each question needs afterwards (its top answer, the raw score
features, the reader's no-answer decision) is kept in a `QuestionResult`, so that tuning can try thresholds
and calibrations without running the model again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from spanqa.errors import InputError
from spanqa.evaluation.journal import ChunkProgress, Journal, run_resumable
from spanqa.evaluation.metrics import answerability_auc, compute_exact, gold_texts, squad_v2_eval
from spanqa.evaluation.squad import Example
from spanqa.prediction import Prediction
from spanqa.reading.bucketing import BATCH_SIZE
from spanqa.reading.calibration import Calibrator, expected_calibration_error

ECE_BINS = 10


def answerability(pred: Prediction) -> float:
    """The one no-answer score of a prediction: higher means more likely answerable.

    Everything that ranks questions by answerability (threshold tuning, na_probs, AUC, plots) goes through
    here, so a different decision rule (e.g. a verifier) changes one function. Its units are the units of
    the card's `null_threshold`: the reader answers when `answerability >= null_threshold`.
    """
    return float(pred.null_score_diff)


def decide_no_answer(score: float, threshold: float) -> bool:
    """The reader's decision rule (Prediction.no_answer), for trying thresholds without the model."""
    return bool(score < threshold)


def na_prob(score: float) -> float:
    """The official "probability of no answer" format: a decreasing map of the answerability score."""
    return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, score))))


@dataclass
class QuestionResult:
    """What evaluation keeps of one question."""

    id: str
    answers: list[str]  # gold answer texts; empty for an unanswerable question
    text: str  # the top answer, decided or not ("" when the model found no span at all)
    answerability: float
    null_score_diff: float  # raw calibration feature, as the reader computes it
    log_share: float  # log of the top answer's softmax share (raw calibration feature); -inf if no span
    no_answer: bool  # the reader's decision at its threshold

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)  # as the official script decides it

    @property
    def predicted(self) -> str:
        return "" if self.no_answer else self.text

    @property
    def top_correct(self) -> bool:
        """Whether the top answer, given as an answer, would be an exact match; never for no-answer gold."""
        return self.has_answer and max(compute_exact(g, self.text) for g in gold_texts(self.answers)) == 1

    def features(self) -> tuple[float, float]:
        """The calibrator's inputs for the top answer (calibration.FEATURES)."""
        return self.null_score_diff, self.log_share


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

    The reader runs uncalibrated (its scores are then the softmax shares), so the raw calibration
    features can be recovered from its scores without repeating its logic; the model's own calibrator
    is applied afterwards by `calibrated_scores`. `reading` holds Reader.answer_batch options. With a
    `journal`, results are kept as they come and a rerun continues an interrupted run
    (spanqa.evaluation.journal).
    """
    if not examples:
        raise InputError("no questions to evaluate")
    reading = {k: v for k, v in reading.items() if k != "top_k"}  # only the top answer is evaluated

    def read_chunk(indexes: list[int], report: ChunkProgress) -> list[dict[str, Any]]:
        chunk = [examples[i] for i in indexes]
        preds = reader.answer_batch(
            [(ex.question, ex.context) for ex in chunk],
            batch_size=batch_size,
            top_k=1,
            calibrated=False,
            progress=report,
            **reading,
        )
        return [asdict(_result(ex, pred)) for ex, pred in zip(chunk, preds)]

    records = run_resumable([ex.id for ex in examples], read_chunk, journal, progress=progress)
    return [QuestionResult(**r) for r in records]


def _result(ex: Example, pred: Prediction) -> QuestionResult:
    top = pred.answers[0] if pred.answers else None
    log_share = math.log(top.score) if top is not None and top.score > 0 else -math.inf
    return QuestionResult(
        id=ex.id,
        answers=[a.text for a in ex.answers],
        text=top.text if top is not None else "",
        answerability=answerability(pred),
        null_score_diff=float(pred.null_score_diff),
        log_share=log_share,
        no_answer=pred.no_answer,
    )


def with_threshold(results: Sequence[QuestionResult], threshold: float) -> list[QuestionResult]:
    """The same results with the decision taken again at another threshold."""
    return [replace(r, no_answer=decide_no_answer(r.answerability, threshold)) for r in results]


def predictions(results: Sequence[QuestionResult]) -> dict[str, str]:
    """The official predictions format: id -> answer text, "" for no answer."""
    return {r.id: r.predicted for r in results}


def na_probs(results: Sequence[QuestionResult]) -> dict[str, float]:
    """The official no-answer probabilities format: id -> probability that the question has no answer."""
    return {r.id: na_prob(r.answerability) for r in results}


def with_top_answer(results: Sequence[QuestionResult]) -> list[QuestionResult]:
    """The results whose question got a top answer (the model found a span): what calibration is about."""
    return [r for r in results if math.isfinite(r.log_share)]


def calibrated_scores(
    results: Sequence[QuestionResult], calibrator: Calibrator
) -> tuple[np.ndarray, np.ndarray]:
    """The top answers' scores as the reader with this calibrator gives them, and whether each is correct.

    Questions where the model found no span have no top answer and are left out.
    """
    kept = with_top_answer(results)
    scores = np.array([calibrator.score(*r.features()) for r in kept], dtype=np.float64)
    correct = np.array([r.top_correct for r in kept], dtype=np.float64)
    return scores, correct


def evaluate_results(
    results: Sequence[QuestionResult], calibrator: Calibrator | None = None
) -> dict[str, Any]:
    """The official SQuAD 2.0 metrics of the reader's decisions, plus `HasAns_auc` and `ece`.

    Official keys: exact, f1, total, HasAns_* / NoAns_* (when the data has such questions), best_exact,
    best_exact_thresh, best_f1, best_f1_thresh (thresholds on the na_probs written for the official script).
    """
    golds = {r.id: r.answers for r in results}
    metrics: dict[str, Any] = dict(squad_v2_eval(golds, predictions(results), na_probs(results)))
    metrics["HasAns_auc"] = answerability_auc(
        [r.answerability for r in results], [r.has_answer for r in results]
    )
    scores, correct = calibrated_scores(results, calibrator or Calibrator())
    metrics["ece"] = expected_calibration_error(scores, correct, bins=ECE_BINS)
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable table of the metrics."""
    lines = []
    for key, value in metrics.items():
        if value is None:
            shown = "n/a"
        elif isinstance(value, int):
            shown = str(value)
        elif key.endswith("_thresh") or key in ("ece", "HasAns_auc"):
            shown = f"{value:.4f}"
        else:
            shown = f"{value:.2f}"
        lines.append(f"{key:<18} {shown}")
    return "\n".join(lines)
