"""Tuning a trained model on a held-out SQuAD-format file: the no-answer threshold and score calibration.

The result goes into the model's card (spanqa.json), where the Reader finds it:
- `null_threshold`: the threshold on the answerability score (evaluation.answerability, today
  null_score_diff) that gives the best SQuAD 2.0 F1 on the tuning set, found by the official search;
- `calibration`: Platt scaling of the top answer's raw features, fitted so that an answer's score is the
  probability that it exactly matches a gold answer (any answer to an unanswerable question is wrong);
- `tuning`: what was measured: the data, official metrics at the new threshold, AUC, ECE before and after.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.model_dir import read_card, resolve_model, write_card
from spanqa.errors import InputError
from spanqa.evaluation.evaluate import (
    ECE_BINS,
    QuestionResult,
    calibrated_scores,
    evaluate_results,
    read_questions,
    with_threshold,
    with_top_answer,
)
from spanqa.evaluation.metrics import best_cut, get_raw_scores
from spanqa.evaluation.squad import load_squad
from spanqa.reading.bucketing import BATCH_SIZE
from spanqa.reading.calibration import (
    Calibrator,
    cross_validated_scores,
    expected_calibration_error,
    fit_calibrator,
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


def best_threshold(results: Sequence[QuestionResult]) -> tuple[float, float]:
    """(best F1, threshold): the official best-F1 search over answering every question's top answer.

    The threshold is in answerability units and lies halfway between the last question answered at the
    best cut and the next lower score, so the same decisions survive small numeric differences between
    backends. Answering nothing at all gives a threshold above every score.
    """
    golds = {r.id: r.answers for r in results}
    always = {r.id: r.text for r in results}  # every top answer given, so any threshold can be tried
    _, f1_raw = get_raw_scores(golds, always)
    has_ans = {r.id: r.has_answer for r in results}
    na_scores = {r.id: -r.answerability for r in results}
    best_f1, qid = best_cut(always, f1_raw, na_scores, has_ans)
    finite = np.array(sorted({r.answerability for r in results if math.isfinite(r.answerability)}))
    if len(finite) == 0:
        return best_f1, 0.0
    if qid is None or not math.isfinite(-na_scores[qid]):
        return best_f1, float(finite[-1] + 1.0)
    cut = -na_scores[qid]
    lower = finite[finite < cut]
    return best_f1, float((cut + lower[-1]) / 2.0 if len(lower) else cut - 1.0)


def tune_results(
    model_dir: Path,
    results: Sequence[QuestionResult],
    *,
    source: str,
    plots_dir: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit threshold and calibration on a run's results, store them in the card; returns the `tuning`
    section written there (metrics at the new threshold with the new calibration)."""
    if not results:
        raise InputError("no questions to tune on")
    best_f1, threshold = best_threshold(results)
    tuned = with_threshold(results, threshold)
    raw_scores, correct = calibrated_scores(results, Calibrator())
    kept = with_top_answer(results)
    x = np.array([r.features() for r in kept], dtype=np.float64).reshape(-1, 2)
    calibrator = fit_calibrator(x, correct)
    fitted_scores, _ = calibrated_scores(results, calibrator)
    metrics = evaluate_results(tuned, calibrator)
    section = {
        "data": source,
        "questions": len(results),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "threshold": threshold,
        "threshold_units": "null_score_diff: answer when it is >= threshold",
        "best_f1_search": best_f1,
        "metrics": metrics,
        "calibrated_answers": len(kept),
        "correct_rate": float(correct.mean()) if len(correct) else None,
        "ece_before": expected_calibration_error(raw_scores, correct, ECE_BINS),
        "ece_after": expected_calibration_error(fitted_scores, correct, ECE_BINS),
        "ece_after_cv5": expected_calibration_error(cross_validated_scores(x, correct), correct, ECE_BINS)
        if len(kept) >= 10
        else None,
        "settings": settings or {},
    }
    card = read_card(model_dir)
    card["null_threshold"] = threshold
    card["calibration"] = {**calibrator.to_card(), "fitted_on": source, "answers": len(kept)}
    card["tuning"] = section
    write_card(model_dir, card)
    log.info(
        "tuned on %s: null_threshold %.3f, F1 %.2f, ECE %.3f -> %.3f",
        source,
        threshold,
        metrics["f1"],
        section["ece_before"],
        section["ece_after"],
    )
    if plots_dir is not None:
        write_plots(results, threshold, calibrator, Path(plots_dir), prefix="tuning")
    return section


def write_plots(
    results: Sequence[QuestionResult], threshold: float, calibrator: Calibrator, plots_dir: Path, prefix: str
) -> list[Path]:
    """The threshold plot and the reliability diagram (raw vs calibrated scores) as PNG files."""
    try:
        from spanqa.evaluation.plots import plot_reliability, plot_threshold
    except ImportError:  # pragma: no cover - matplotlib is in the `train` extra
        log.warning("matplotlib is not installed: no plots (pip install 'spanqa[train]')")
        return []
    golds = {r.id: r.answers for r in results}
    _, f1_raw = get_raw_scores(golds, {r.id: r.text for r in results})
    paths = [
        plot_threshold(
            [r.answerability for r in results],
            [r.has_answer for r in results],
            [f1_raw[r.id] for r in results],
            threshold,
            plots_dir / f"{prefix}_threshold.png",
        )
    ]
    raw, correct = calibrated_scores(results, Calibrator())
    curves = {"uncalibrated": (raw, correct)}
    if calibrator.coef is not None:
        curves["calibrated"] = (calibrated_scores(results, calibrator)[0], correct)
    paths.append(plot_reliability(curves, plots_dir / f"{prefix}_reliability.png", bins=ECE_BINS))
    log.info("plots written: %s", ", ".join(str(p) for p in paths))
    return paths


def tune_model(
    model_dir: str | Path | None,
    tune_file: str | Path,
    *,
    force: bool = False,
    backend: str = "torch",
    batch_size: int = BATCH_SIZE,
    limit: int | None = None,
    plots_dir: str | Path | None = None,
    progress: bool = True,
    **reading: Any,
) -> dict[str, Any]:
    """Run the model over `tune_file`, then store threshold, calibration and tuning metrics in its card.

    Plots go to `plots_dir`, by default `<model_dir>/plots`. `reading` holds Reader.answer_batch options
    (max_seq_len, doc_stride, max_answer_len); the reader's defaults otherwise.
    """
    from spanqa.reading.reader import Reader

    check_tuning_file(tune_file, force)
    directory = resolve_model(model_dir)
    examples = load_squad(tune_file)[:limit] if limit else load_squad(tune_file)
    reader = Reader.load(directory, backend=backend)
    results = read_questions(reader, examples, batch_size=batch_size, progress=progress, **reading)
    return tune_results(
        directory,
        results,
        source=Path(tune_file).name,
        plots_dir=Path(plots_dir) if plots_dir is not None else directory / "plots",
        settings={
            "backend": backend,
            "max_seq_len": reading.get("max_seq_len") or reader.max_seq_len,
            **{k: v for k, v in reading.items() if v is not None and k not in ("top_k", "null_threshold")},
        },
    )
