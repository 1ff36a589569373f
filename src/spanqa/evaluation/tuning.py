"""Tuning a trained model on a held-out SQuAD-format file: the two calibrations, and a raw threshold.

The result goes into the model's card (spanqa.json), where the Reader finds it:
- `calibration`: Platt scaling of the top span's features, fitted on the tuning set's *answerable*
  questions only, so that an answer's score is the probability that it exactly matches a gold answer given
  that the text answers the question;
- `answerable_calibration`: Platt scaling of answerability features, fitted on every question, so that
  `answerable` is the probability that the text answers it; `tuning_prior` records the tuning set's share of
  answerable questions (the prior those probabilities hold for; the reader shifts them to other priors);
- `answerable_prior`: the default prior (kept if the card has one, unless a new one is given);
- `null_threshold`: the best-F1 raw threshold on null_score_diff, for callers who set raw thresholds;
- `tuning`: what was measured: the data, metrics at the default prior, ECE before and after, AUC, the F1
  curve against the prior.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.model_dir import read_card, write_card
from spanqa.errors import InputError
from spanqa.evaluation.evaluate import (
    ECE_BINS,
    QuestionResult,
    answerable_probs,
    decided,
    evaluate_results,
    f1_by_prior,
    f1_by_threshold,
    read_questions,
    span_scores,
)
from spanqa.evaluation.metrics import best_cut, get_raw_scores
from spanqa.evaluation.squad import load_squad
from spanqa.reading.bucketing import BATCH_SIZE
from spanqa.reading.calibration import (
    ANSWERABLE_FEATURES,
    SPAN_FEATURE_SETS,
    SPAN_FEATURES,
    Calibration,
    Platt,
    check_prior,
    cross_validated_probs,
    expected_calibration_error,
    fit_platt,
)

log = logging.getLogger("spanqa.evaluation.tuning")

# Files that must never be tuned on: the project's evaluation half (see ../shared/data/README.md).
EVALUATION_ONLY = ("dev-half",)


def check_tuning_file(path: str | Path, force: bool = False) -> None:
    """Refuse a file named like an evaluation-only set: a threshold tuned on it would inflate its scores."""
    name = Path(path).name.lower()
    if not force and any(mark in name for mark in EVALUATION_ONLY):
        raise InputError(
            f"{Path(path).name} is evaluation data: tuning on it would make its scores meaningless; "
            "tune on a held-out file (e.g. a split of squad-v2.0-dev-rest.json), or pass --force"
        )


# Below these counts a fitted calibration (and the ECE measured on the same questions) says more about the
# sample than about the model: 10 ECE bins need a few dozen questions each to mean anything.
MIN_SPAN_ANSWERS = 200  # answerable questions with a top answer (span calibration)
MIN_PER_CLASS = 100  # answerable and unanswerable questions each (answerable calibration)
# Raw thresholds on null_score_diff at which the tuning section reports F1 (the raw rule's frontier).
THRESHOLD_GRID = (4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0)
# Priors of the F1 curves in the tuning section and the plots: the evidence a default prior is chosen on.
PLOT_PRIORS = tuple(float(p) for p in np.round(np.linspace(0.02, 0.98, 49), 4))


def best_threshold(results: Sequence[QuestionResult]) -> tuple[float, float]:
    """(best F1, threshold): the official best-F1 search over answering every question's top answer,
    ranking questions by their raw null_score_diff.

    The threshold lies halfway between the last question answered at the best cut and the next lower
    score, so the same decisions survive small numeric differences between backends. Answering nothing at
    all gives a threshold above every score.
    """
    score = {r.id: r.features.get("null_score_diff", -math.inf) for r in results}
    golds = {r.id: r.answers for r in results}
    always = {r.id: r.text for r in results}  # every top answer given, so any threshold can be tried
    _, f1_raw = get_raw_scores(golds, always)
    has_ans = {r.id: r.has_answer for r in results}
    na_scores = {k: -v for k, v in score.items()}
    best_f1, qid = best_cut(always, f1_raw, na_scores, has_ans)
    finite = np.array(sorted({v for v in score.values() if math.isfinite(v)}))
    if len(finite) == 0:
        return best_f1, 0.0
    if qid is None or not math.isfinite(score[qid]):
        return best_f1, float(finite[-1] + 1.0)
    cut = score[qid]
    lower = finite[finite < cut]
    return best_f1, float((cut + lower[-1]) / 2.0 if len(lower) else cut - 1.0)


def size_problems(answerable: int, unanswerable: int) -> list[str]:
    """Why a tuning set with these counts of questions is too small to fit the calibrations honestly
    (empty when it is large enough)."""
    spans = answerable
    problems = []
    if spans < MIN_SPAN_ANSWERS:
        problems.append(f"{spans} answerable questions (the span calibration needs {MIN_SPAN_ANSWERS})")
    if min(spans, unanswerable) < MIN_PER_CLASS:
        problems.append(
            f"{spans} answerable and {unanswerable} unanswerable questions "
            f"(the answerable calibration needs {MIN_PER_CLASS} of each)"
        )
    return problems


def fit_calibration(
    results: Sequence[QuestionResult],
    null_threshold: float,
    default_prior: float | None = None,
    span_sets: Sequence[Sequence[QuestionResult]] = (),
) -> tuple[Calibration, dict[str, float]]:
    """Both calibrations fitted on the results: spans on the answerable questions, answerable on all; and
    the span feature sets' worst-set ECE that chose the span calibration's features (fit_span_calibration).

    `span_sets`: more sets whose answerable questions join the span calibration only (e.g. an
    all-answerable set in another question style); each weighs as much as the results' answerable ones.
    """
    span, span_scores = fit_span_calibration(results, span_sets)
    with_span = [r for r in results if r.has_span]  # no span: answerable is 0 whatever the regression
    x = np.array([[r.features[f] for f in ANSWERABLE_FEATURES] for r in with_span], dtype=np.float64)
    y = np.array([r.has_answer for r in with_span], dtype=np.float64)
    answer = fit_platt(x.reshape(-1, len(ANSWERABLE_FEATURES)), y, ANSWERABLE_FEATURES)
    tuning_prior = float(np.mean([r.has_answer for r in results]))
    tuning_prior = min(max(tuning_prior, 0.01), 0.99)
    calibration = Calibration(
        span=span,
        answerable=answer,
        tuning_prior=tuning_prior,
        default_prior=tuning_prior if default_prior is None else default_prior,
        null_threshold=null_threshold,
    )
    return calibration, span_scores


# A richer span feature set is kept only when it lowers the worst set's cross-validated ECE by this much.
SPAN_SET_MARGIN = 0.005


def fit_span_calibration(
    results: Sequence[QuestionResult], span_sets: Sequence[Sequence[QuestionResult]] = ()
) -> tuple[Platt, dict[str, float]]:
    """The span calibration, on the feature set (SPAN_FEATURE_SETS) with the lowest 5-fold ECE on the worst
    of the tuning sets: a feature such as question length is used only where it calibrates every set better.
    Returns it and each candidate's worst-set cross-validated ECE ("+"-joined feature names -> ECE)."""
    groups = [[r for r in results if r.has_answer and r.has_span]]
    groups += [[r for r in extra if r.has_answer and r.has_span] for extra in span_sets]
    groups = [g for g in groups if g]
    rows = [r for g in groups for r in g]
    weights = (
        np.concatenate([np.full(len(g), len(groups[0]) / len(g)) for g in groups]) if rows else np.ones(0)
    )
    which = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)]) if rows else np.zeros(0)
    y = np.array([r.top_correct for r in rows], dtype=np.float64)
    candidates = [fs for fs in SPAN_FEATURE_SETS if all(f in r.features for r in rows for f in fs)]
    scores: dict[str, float] = {}
    best = SPAN_FEATURES
    for features in candidates if len(rows) >= 10 else []:  # fewer: no folds worth the name
        x = np.array([[r.features[f] for f in features] for r in rows], dtype=np.float64)
        probs = cross_validated_probs(x, y, features, weights=weights)
        worst = max(
            expected_calibration_error(probs[which == i], y[which == i], ECE_BINS) for i in range(len(groups))
        )
        scores["+".join(features)] = worst
        if worst < scores["+".join(best)] - SPAN_SET_MARGIN:
            best = features
    x = np.array([[r.features[f] for f in best] for r in rows], dtype=np.float64)
    span = fit_platt(x.reshape(-1, len(best)), y, best, weights=weights)
    return span, scores


def tune_results(
    model_dir: Path,
    results: Sequence[QuestionResult],
    *,
    source: str,
    answerable_prior: float | None = None,
    span_sets: dict[str, Sequence[QuestionResult]] | None = None,
    plots_dir: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit both calibrations and the raw threshold on a run's results and store them in the card.

    `answerable_prior` becomes the card's default prior (None: keep the card's, else the tuning prior).
    `span_sets` (name -> results) join the span calibration only (see `fit_calibration`).
    Returns the `tuning` section written there. A set too small to fit honestly is tuned on anyway with a
    loud warning, recorded in the section (the CLI refuses it unless --force).
    """
    if not results:
        raise InputError("no questions to tune on")
    problems = size_problems(
        sum(r.has_answer and r.has_span for r in results), sum(not r.has_answer for r in results)
    )
    if problems:
        log.warning("TUNING SET TOO SMALL to calibrate honestly: %s", "; ".join(problems))
    card = read_card(model_dir)
    if answerable_prior is None and card.get("answerable_prior") is not None:
        answerable_prior = check_prior(card["answerable_prior"], "the card's answerable_prior")
    best_f1, threshold = best_threshold(results)
    span_sets = span_sets or {}
    calibration, feature_ece = fit_calibration(results, threshold, answerable_prior, list(span_sets.values()))
    raw = Calibration(null_threshold=threshold)  # uncalibrated: softmax shares, raw threshold score
    metrics = evaluate_results(decided(results, calibration), calibration)
    section = {
        "data": source,
        "questions": len(results),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tuning_prior": calibration.tuning_prior,
        "answerable_prior": calibration.default_prior,
        "metrics": metrics,
        "span_ece_before": expected_calibration_error(*span_scores(results, raw), bins=ECE_BINS),
        "span_ece_after": metrics["span_ece"],
        "span_ece_after_cv5": _cv_ece(results, "span", calibration.span.features)  # type: ignore[union-attr]
        if not span_sets
        else None,
        "span_features_worst_set_ece_cv5": feature_ece,
        "span_sets": {
            name: {
                "questions": len(extra),
                "span_ece_before": expected_calibration_error(*span_scores(extra, raw), bins=ECE_BINS),
                "span_ece_after": expected_calibration_error(*span_scores(extra, calibration), bins=ECE_BINS),
                "f1_by_prior": f1_by_prior(extra, calibration, PLOT_PRIORS),
            }
            for name, extra in span_sets.items()
        },
        "answerable_ece_after": metrics["answerable_ece"],
        "answerable_ece_after_cv5": _cv_ece(results, "answerable"),
        "null_threshold": threshold,
        "null_threshold_units": "null_score_diff: answer when it is >= threshold",
        "best_f1_raw_threshold": best_f1,
        "f1_by_raw_threshold": f1_by_threshold(results, THRESHOLD_GRID),
        "f1_by_prior": f1_by_prior(results, calibration, PLOT_PRIORS),
        "settings": settings or {},
    }
    if problems:
        section["warning"] = "tuning set too small to calibrate honestly: " + "; ".join(problems)
    card["null_threshold"] = threshold
    card["calibration"] = {
        **calibration.span.to_card(),  # type: ignore[union-attr]
        "given": "the text answers the question (fitted on answerable questions only)",
        "fitted_on": " + ".join([source, *span_sets]),
        "answers": sum(
            r.has_answer and r.has_span for group in [results, *span_sets.values()] for r in group
        ),
    }
    card["answerable_calibration"] = {
        **calibration.answerable.to_card(),  # type: ignore[union-attr]
        "tuning_prior": calibration.tuning_prior,
        "fitted_on": source,
        "questions": len(results),
    }
    card["answerable_prior"] = calibration.default_prior
    card["tuning"] = section
    write_card(model_dir, card)
    log.info(
        "tuned on %s: tuning prior %.3f, default prior %.3f, F1 %.2f, span ECE %.3f, answerable ECE %.3f",
        source,
        calibration.tuning_prior,
        calibration.default_prior,
        metrics["f1"],
        metrics["span_ece"],
        metrics["answerable_ece"],
    )
    if plots_dir is not None:
        write_plots(results, calibration, Path(plots_dir), prefix="tuning")
    return section


def _cv_ece(
    results: Sequence[QuestionResult], which: str, span_features: Sequence[str] = SPAN_FEATURES
) -> float | None:
    """The ECE of 5-fold cross-validated probabilities: an honest figure on the tuning set itself."""
    if which == "span":
        kept = [r for r in results if r.has_answer and r.has_span]
        features, y = tuple(span_features), np.array([r.top_correct for r in kept], dtype=np.float64)
    else:
        kept = [r for r in results if r.has_span]
        features, y = ANSWERABLE_FEATURES, np.array([r.has_answer for r in kept], dtype=np.float64)
    if len(kept) < 10:
        return None
    x = np.array([[r.features[f] for f in features] for r in kept], dtype=np.float64)
    return expected_calibration_error(cross_validated_probs(x, y, features), y, ECE_BINS)


def write_plots(
    results: Sequence[QuestionResult], calibration: Calibration, plots_dir: Path, prefix: str
) -> list[Path]:
    """F1 against the prior, and the reliability diagrams of both probabilities, as PNG files.

    Needs matplotlib (the `train` extra); callers check for it first (the CLI with `cli.common.require`).
    """
    from spanqa.evaluation.plots import plot_prior_curve, plot_reliability

    raw = Calibration(null_threshold=calibration.null_threshold)
    curve = f1_by_prior(results, calibration, PLOT_PRIORS)
    paths = [
        plot_prior_curve(
            curve,
            calibration.default_prior,
            calibration.tuning_prior,
            plots_dir / f"{prefix}_f1_by_prior.png",
            title=f"F1 against the prior ({len(results)} questions)",
        )
    ]
    spans = {"softmax share among spans": span_scores(results, raw)}
    answerable = {}
    if calibration.calibrated:
        spans["calibrated"] = span_scores(results, calibration)
        answerable["calibrated, at the tuning prior"] = answerable_probs(results, calibration)
    else:
        answerable["sigmoid(null_score_diff - threshold)"] = answerable_probs(results, calibration, 0.5)
    paths.append(
        plot_reliability(
            {"answerable (all questions)": answerable, "span score (answerable questions)": spans},
            plots_dir / f"{prefix}_reliability.png",
            bins=ECE_BINS,
        )
    )
    log.info("plots written: %s", ", ".join(str(p) for p in paths))
    return paths


def tune_model(
    model_dir: str | Path,
    tune_file: str | Path,
    *,
    force: bool = False,
    backend: str = "torch",
    batch_size: int = BATCH_SIZE,
    limit: int | None = None,
    answerable_prior: float | None = None,
    plots_dir: str | Path | None = None,
    progress: bool = True,
    **reading: Any,
) -> dict[str, Any]:
    """Run the model in `model_dir` over `tune_file`, then store the calibrations in its card.

    Plots go to `plots_dir` when given (needs matplotlib). `reading` holds Reader.answer_batch options
    (max_seq_len, doc_stride, max_answer_len); the reader's defaults otherwise.
    """
    from spanqa.reading.reader import Reader

    check_tuning_file(tune_file, force)
    if model_dir is None:
        raise InputError("tuning writes into a model's card: name the model directory")
    directory = Path(model_dir)
    examples = load_squad(tune_file)[:limit] if limit else load_squad(tune_file)
    reader = Reader.load(directory, backend=backend)
    results = read_questions(reader, examples, batch_size=batch_size, progress=progress, **reading)
    return tune_results(
        directory,
        results,
        source=Path(tune_file).name,
        answerable_prior=answerable_prior,
        plots_dir=Path(plots_dir) if plots_dir is not None else None,
        settings={
            "backend": backend,
            "max_seq_len": reading.get("max_seq_len") or reader.max_seq_len,
            **{k: v for k, v in reading.items() if v is not None and k not in ("top_k", "null_threshold")},
        },
    )
