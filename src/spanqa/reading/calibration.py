"""Two calibrated probabilities from a reader's raw scores: "is it in the text?" and "is this the span?".

A question's raw scores (`features`, computed by the reader) are turned into:
- `answerable`: the probability that the text answers the question. A logistic regression (Platt scaling)
  on answerability features, fitted on a tuning set whose share of answerable questions is the *tuning
  prior*. For another prior (how often the caller's questions are answered by their texts), Bayes' rule
  shifts the log-odds: logit(p') = logit(p) + logit(prior) - logit(tuning prior).
- each answer's `score`: the probability that the span is right *given that the text answers the
  question*: Platt scaling of the top span's features, fitted on the tuning set's answerable questions only.
  Alternatives share what is left (see Reader), so scores never add up past 1.

The card (spanqa.json) keeps them as `calibration` (spans), `answerable_calibration` (with its
`tuning_prior`) and `answerable_prior` (the default prior). Cards from before the split (one calibration
of the top answer's unconditional correctness, a raw `null_threshold`) still load: their span calibration
is used as it is, and `answerable` is then the logistic of `null_score_diff - null_threshold`, a raw
score whose 0.5 is the stored threshold, not a calibrated probability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spanqa.errors import InputError

# The raw features the reader computes for a question's top span (reading.steps._features):
#   null_score_diff   best span score minus the null score (start + end logit at CLS, minimum over windows)
#   span_log_share    log of the best span's softmax share among spans only (the model's "given answerable")
#   span_logit        the log-odds of that share, log(share / (1 - share)), kept within +-SHARE_LOGIT_BOUND
#   span_mass_diff    log of all spans' mass minus the null score: the model's own log-odds of an answer
#   log_share         log of the best span's share among spans and the null (the pre-split feature)
#   question_log_words  log of the question's length in words: short questions are vaguer, and at the same
#                     share their top span is right less often (TyDi's 7-word questions against SQuAD's 9)
SPAN_FEATURES = ("span_logit", "null_score_diff")
# The span feature sets tuning chooses among (by cross-validated ECE on the tuning data, see tuning.py).
SPAN_FEATURE_SETS = (SPAN_FEATURES, (*SPAN_FEATURES, "question_log_words"))
ANSWERABLE_FEATURES = ("null_score_diff",)
LEGACY_FEATURES = ("null_score_diff", "log_share")
SHARE_LOGIT_BOUND = 14.0  # a share within 1e-6 of 0 or 1: the only span, or one of thousands alike


def share_logit(log_share: float) -> float:
    """log(s / (1 - s)) for s = exp(log_share), bounded so a lone span stays finite."""
    if not math.isfinite(log_share):
        return -SHARE_LOGIT_BOUND
    if log_share >= -1e-12:
        return SHARE_LOGIT_BOUND
    z = log_share - math.log(-math.expm1(log_share))
    return max(-SHARE_LOGIT_BOUND, min(SHARE_LOGIT_BOUND, z))


def sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z)))))


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return math.log(p / (1.0 - p))


def check_prior(prior: object, name: str = "answerable_prior") -> float:
    """A prior probability strictly between 0 and 1 (a number, not a bool), else InputError naming it."""
    if isinstance(prior, bool) or not isinstance(prior, int | float) or not 0.0 < float(prior) < 1.0:
        raise InputError(f"{name} must be a probability strictly between 0 and 1, got {prior!r}")
    return float(prior)


@dataclass(frozen=True)
class Platt:
    """Logistic regression on named features: P = sigmoid(intercept + sum(coef * feature))."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def logit(self, values: Mapping[str, float]) -> float:
        z = self.intercept
        for name, c in zip(self.features, self.coef):
            x = float(values.get(name, 0.0))
            z += c * x if math.isfinite(x) else 0.0  # as in fitting: a missing feature counts 0
        return z

    def __call__(self, values: Mapping[str, float]) -> float:
        return sigmoid(self.logit(values))

    def to_card(self) -> dict[str, Any]:
        return {
            "method": "platt",
            "features": list(self.features),
            "coef": list(self.coef),
            "intercept": self.intercept,
        }

    @classmethod
    def from_card(cls, section: Any) -> Platt | None:
        """The section's regression, or None when it is missing or not one this code can compute."""
        if not isinstance(section, dict) or section.get("method") != "platt":
            return None
        features, coef = section.get("features") or [], section.get("coef") or []
        if not features or len(features) != len(coef):
            return None
        return cls(tuple(map(str, features)), tuple(float(c) for c in coef), float(section["intercept"]))


@dataclass(frozen=True)
class Calibration:
    """What a model's card says about turning raw scores into the two probabilities and the decision."""

    span: Platt | None = None  # P(top span right | answerable); None: the raw softmax share
    answerable: Platt | None = None  # P(answerable) at tuning_prior; None: legacy raw score
    tuning_prior: float = 0.5
    default_prior: float = 0.5  # the prior used when the caller names none
    null_threshold: float = 0.0  # the card's raw threshold (legacy answerable score, raw-threshold users)

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Calibration:
        threshold = card.get("null_threshold")
        answerable = Platt.from_card(card.get("answerable_calibration"))
        section = card.get("answerable_calibration") or {}
        tuning = float(section.get("tuning_prior", 0.5)) if answerable else 0.5
        default = card.get("answerable_prior")
        return cls(
            span=Platt.from_card(card.get("calibration")),
            answerable=answerable,
            tuning_prior=tuning,
            default_prior=float(default) if default is not None else tuning,
            null_threshold=float(threshold) if threshold is not None else 0.0,
        )

    @property
    def calibrated(self) -> bool:
        return self.span is not None and self.answerable is not None

    def span_score(self, features: Mapping[str, float]) -> float:
        """The top span's score: calibrated, else its softmax share among spans."""
        if self.span is None:
            return math.exp(min(0.0, features.get("span_log_share", -math.inf)))
        return self.span(features)

    def answerable_logit(self, features: Mapping[str, float], prior: float | None = None) -> float:
        """Log-odds that the text answers the question, for `prior` (None: the card's default prior)."""
        if not math.isfinite(features.get("null_score_diff", -math.inf)):
            return -math.inf  # no span could be read at all
        if self.answerable is None:
            z = features["null_score_diff"] - self.null_threshold
        else:
            z = self.answerable.logit(features)
        prior = self.default_prior if prior is None else prior
        return z + logit(prior) - logit(self.tuning_prior)

    def answerable_prob(self, features: Mapping[str, float], prior: float | None = None) -> float:
        z = self.answerable_logit(features, prior)
        return 0.0 if z == -math.inf else sigmoid(z)


def fit_platt(
    x: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    weights: np.ndarray | None = None,
    l2: float = 1e-3,
    iters: int = 50,
) -> Platt:
    """Logistic regression by Newton's method; x is (n, len(features)), y is 0/1, optional sample weights.

    A constant (the smoothed rate) when every label is the same, where a logistic fit has no finite optimum.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(y), len(features))
    y = np.asarray(y, dtype=np.float64)
    weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    n, k = float(weights.sum()), float(weights @ y)
    if len(y) == 0:
        return Platt(tuple(features), (0.0,) * len(features), 0.0)
    if k == 0 or k == n:
        rate = (k + 0.5) / (n + 1.0)
        return Platt(tuple(features), (0.0,) * len(features), math.log(rate / (1.0 - rate)))
    x = np.where(np.isfinite(x), x, 0.0)
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    reg = l2 * np.eye(design.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -50, 50)))
        grad = design.T @ (weights * (p - y)) + reg @ w
        hess = design.T @ (design * (weights * p * (1 - p))[:, None]) + reg + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return Platt(tuple(features), tuple(float(c) for c in w[:-1]), float(w[-1]))


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


def cross_validated_probs(
    x: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Each example's probability from a regression fitted without it (an honest tuning-set ECE)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(y), len(features))
    y = np.asarray(y, dtype=np.float64)
    weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    fold = np.random.default_rng(seed).permutation(len(y)) % max(2, folds)
    out = np.zeros(len(y))
    for f in np.unique(fold):
        held = fold == f
        platt = fit_platt(x[~held], y[~held], features, weights=weights[~held])
        out[held] = [platt(dict(zip(features, row))) for row in x[held]]
    return out
