"""Turning raw span scores into the probability that an answer is correct.

Without calibration an answer's score is its softmax share among all spans and "no answer". A tuned model
carries Platt scaling in its card: a logistic regression on two raw features of the span,
`null_score_diff` (span score minus null score) and `log_share` (log of that softmax share), fitted on a
tuning set so that the score is the measured probability that the answer exactly matches a gold answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURES = ("null_score_diff", "log_share")


@dataclass
class Calibrator:
    coef: tuple[float, float] | None = None
    intercept: float = 0.0

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> Calibrator:
        cal = card.get("calibration") or {}
        if cal.get("method") == "platt" and list(cal.get("features", [])) == list(FEATURES):
            return cls(tuple(float(c) for c in cal["coef"]), float(cal["intercept"]))  # type: ignore[arg-type]
        return cls()

    def score(self, null_score_diff: float, log_share: float) -> float:
        if self.coef is None:
            return math.exp(min(0.0, log_share))
        z = self.coef[0] * null_score_diff + self.coef[1] * log_share + self.intercept
        return float(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z)))))

    def to_card(self) -> dict[str, Any]:
        return {
            "method": "platt",
            "features": list(FEATURES),
            "coef": list(self.coef or ()),
            "intercept": self.intercept,
        }


def fit_platt(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> Calibrator:
    """Logistic regression by Newton's method; x is (n, 2) of FEATURES, y is 0/1 correctness."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = np.where(np.isfinite(x), x, 0.0)
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    reg = l2 * np.eye(design.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -50, 50)))
        grad = design.T @ (p - y) + reg @ w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + reg + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return Calibrator((float(w[0]), float(w[1])), float(w[2]))


def reliability_bins(prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict[str, np.ndarray]:
    """Per equal-width probability bin: mean score, accuracy and count (NaN scores for empty bins)."""
    prob = np.asarray(prob, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    which = np.minimum((prob * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=prob, minlength=bins) / count
        acc = np.bincount(which, weights=correct, minlength=bins) / count
    return {"confidence": conf, "accuracy": acc, "count": count}


def expected_calibration_error(prob: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width probability bins: the mean |accuracy - confidence|, weighted by bin size."""
    if len(prob) == 0:
        return 0.0
    b = reliability_bins(prob, correct, bins)
    full = b["count"] > 0
    weights = b["count"][full] / b["count"].sum()
    return float(np.sum(weights * np.abs(b["accuracy"][full] - b["confidence"][full])))


def fit_calibrator(x: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling on a tuning set; a constant (the smoothed rate of correct answers) when every answer
    is right or every answer is wrong, where a logistic fit has no finite optimum."""
    y = np.asarray(y, dtype=np.float64)
    n, k = len(y), float(np.sum(y))
    if n == 0:
        return Calibrator()
    if k == 0 or k == n:
        rate = (k + 0.5) / (n + 1.0)
        return Calibrator((0.0, 0.0), float(math.log(rate / (1.0 - rate))))
    return fit_platt(x, y)


def cross_validated_scores(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each example's calibrated score from a calibrator fitted without it (an honest tuning-set ECE)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fold = np.random.default_rng(seed).permutation(len(y)) % max(2, folds)
    out = np.zeros(len(y))
    for f in np.unique(fold):
        held = fold == f
        cal = fit_calibrator(x[~held], y[~held])
        out[held] = [cal.score(a, b) for a, b in x[held]]
    return out
