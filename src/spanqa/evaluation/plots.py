"""PNG plots of F1 against the prior and of both probabilities' calibration (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def plot_prior_curve(
    f1_by_prior: dict[str, float], default_prior: float, tuning_prior: float, out: Path, title: str = ""
) -> Path:
    """SQuAD 2.0 F1 of the decision `answerable < 0.5` against the prior, with the default and tuning
    priors marked: where a user reads what a prior costs on this data."""
    plt = _pyplot()
    priors = np.array([float(k) for k in f1_by_prior])
    f1 = np.array(list(f1_by_prior.values()))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(priors, f1, marker=".", label="F1 when no_answer = answerable < 0.5")
    ax.axvline(default_prior, color="tab:green", linestyle="--", label=f"default prior {default_prior:.2f}")
    ax.axvline(tuning_prior, color="gray", linestyle=":", label=f"tuning prior {tuning_prior:.2f}")
    best = int(np.argmax(f1))
    side = "right" if priors[best] > 0.5 else "left"  # keep the label inside the axes
    ax.annotate(f"best {f1[best]:.1f} at {priors[best]:.2f}", (priors[best], f1[best]), fontsize=8, ha=side)
    ax.set_xlabel("answerable_prior: how often the questions are answered by their texts")
    ax.set_ylabel("SQuAD 2.0 F1")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "F1 against the prior")
    return _save(fig, plt, out)


def plot_reliability(
    panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]],
    out: Path,
    bins: int = 10,
    title: str = "",
) -> Path:
    """Reliability diagrams side by side, one panel per probability: accuracy against mean probability per
    bin, one line per named (probabilities, outcomes); thin bars show where the probabilities fall."""
    from spanqa.reading.calibration import expected_calibration_error, reliability_bins

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.5), squeeze=False)
    for ax, (panel, curves) in zip(axes[0], panels.items()):
        ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfect calibration")
        width = 1.0 / bins / (len(curves) + 1)
        for k, (name, (prob, outcome)) in enumerate(curves.items()):
            prob, outcome = np.asarray(prob), np.asarray(outcome)
            b = reliability_bins(prob, outcome, bins)
            used = b["count"] > 0
            ece = expected_calibration_error(prob, outcome, bins)
            line = ax.plot(
                b["confidence"][used], b["accuracy"][used], marker="o", label=f"{name} (ECE {ece:.3f})"
            )
            share = b["count"] / max(1, b["count"].sum())
            lefts = np.arange(bins) / bins + (k + 0.5) * width
            ax.bar(lefts, 0.25 * share, width=width, align="edge", alpha=0.35, color=line[0].get_color())
        ax.set_xlabel("probability")
        ax.set_ylabel("observed frequency")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(panel, fontsize=10)
    fig.suptitle(title or f"Reliability ({bins} bins; bars: share of questions per bin, x4)", fontsize=10)
    return _save(fig, plt, out)


def _save(fig, plt, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
