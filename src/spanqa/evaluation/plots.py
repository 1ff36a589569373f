"""PNG plots of the no-answer threshold and of score calibration (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def threshold_curves(
    answerability: np.ndarray, has_answer: np.ndarray, answered_f1: np.ndarray
) -> dict[str, np.ndarray]:
    """For each candidate threshold (every distinct score, high to low): precision and recall of "has an
    answer" and the SQuAD 2.0 F1 when questions scoring at least the threshold are answered.

    `answered_f1` is each question's F1 when answered (0 for an unanswerable one); an unanswered question
    scores 1 if it is unanswerable, else 0, as in the official metric.
    """
    score = np.asarray(answerability, dtype=np.float64)
    pos = np.asarray(has_answer, dtype=bool)
    f1 = np.asarray(answered_f1, dtype=np.float64)
    keep = np.isfinite(score)
    order = np.argsort(-score[keep], kind="stable")
    s, p, f = score[keep][order], pos[keep][order], f1[keep][order]
    last = np.r_[s[1:] != s[:-1], True]  # a threshold can only sit after the last of a run of ties
    answered = np.arange(1, len(s) + 1)[last]
    true_pos = np.cumsum(p)[last]
    n_neg_unanswered = (~pos).sum() - np.cumsum(~p)[last]
    return {
        "threshold": s[last],
        "precision": true_pos / answered,
        "recall": true_pos / max(1, pos.sum()),
        "f1": 100.0 * (np.cumsum(np.where(p, f, 0.0))[last] + n_neg_unanswered) / max(1, len(pos)),
    }


def plot_threshold(
    answerability: Sequence[float],
    has_answer: Sequence[bool],
    answered_f1: Sequence[float],
    threshold: float | None,
    out: Path,
    title: str = "",
) -> Path:
    """Precision and recall of "has an answer", and SQuAD F1, against the no-answer threshold."""
    plt = _pyplot()
    c = threshold_curves(np.asarray(answerability), np.asarray(has_answer), np.asarray(answered_f1))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(c["threshold"], c["precision"], label='precision of "has answer"')
    ax.plot(c["threshold"], c["recall"], label='recall of "has answer"')
    ax.plot(c["threshold"], c["f1"] / 100.0, label="SQuAD 2.0 F1 / 100")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="gray", linestyle="--", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("threshold on the answerability score (null_score_diff): answer when score >= threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "No-answer threshold")
    return _save(fig, plt, out)


def plot_reliability(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]], out: Path, bins: int = 10, title: str = ""
) -> Path:
    """A reliability diagram: accuracy against mean score per bin, one line per named (scores, correct)."""
    from spanqa.reading.calibration import expected_calibration_error, reliability_bins

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfect calibration")
    width = 1.0 / bins / (len(curves) + 1)
    for k, (name, (prob, correct)) in enumerate(curves.items()):
        b = reliability_bins(np.asarray(prob), np.asarray(correct), bins)
        used = b["count"] > 0
        ece = expected_calibration_error(np.asarray(prob), np.asarray(correct), bins)
        line = ax.plot(
            b["confidence"][used], b["accuracy"][used], marker="o", label=f"{name} (ECE {ece:.3f})"
        )
        # where the answers are: the share of answers in each bin, as thin bars along the bottom
        share = b["count"] / max(1, b["count"].sum())
        lefts = np.arange(bins) / bins + (k + 0.5) * width
        ax.bar(lefts, 0.25 * share, width=width, align="edge", alpha=0.35, color=line[0].get_color())
    ax.set_xlabel("score of the top answer")
    ax.set_ylabel("fraction exactly correct")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"Reliability ({bins} bins; bars: share of answers per bin, x4)")
    return _save(fig, plt, out)


def _save(fig, plt, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
