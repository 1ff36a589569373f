"""One `answer_batch` call in steps: forward passes gather each question's spans across its windows, then
`finish` turns them into a Prediction (disjoint answers, calibrated probabilities, the no-answer decision).

Steps let the HTTP service interleave requests and drop abandoned ones between passes. When the backend has
a `fallback` (onnx-int8: fp32), the questions whose decision its noise could flip are read again by it in
further steps of the same Reading (FALLBACK_MARGIN, SPAN_GAP).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spanqa.prediction import Answer, Prediction
from spanqa.reading.bucketing import length_batches
from spanqa.reading.calibration import Calibration, share_logit
from spanqa.reading.decode import best_spans, char_span
from spanqa.reading.windows import Windows, pad_batch, pad_offsets
from spanqa.retrieval.plan import ReadPlan

# Spans kept per window, whatever top_k: overlapping alternatives are grouped among them (finish),
# and a fixed number keeps a question's scores the same for every top_k.
CANDIDATES_PER_WINDOW = 64
# A question whose `answerable` lies within this of 0.5 after an int8 read is read again by the backend's
# `fallback()` (fp32), where it has one: int8's noise (sd 0.017 on `answerable`) flips such decisions. On v2,
# 600 dev-rest-tune questions: agreement with fp32 96.2% -> 98.2%, 5.2% of the questions read twice.
FALLBACK_MARGIN = 0.02
# So is an answered question whose two best answers (spans with different words) score (start + end logits)
# within this of each other: int8's noise picks between them. With token-wise int8 feed-forward outputs
# (backends.quantize), v2, the same questions: 97.5% -> 98.0%, 8.3% read twice; chosen as the margin was,
# the smallest gap with >= 98% (benchmarks/int8_fallback.py --span-gaps; docs/onnx.md). Re-checked on v4:
# margin and gap together 95.3% -> 98.3%, 6.7% read twice, the fewest re-reads of the pairs at >= 98%.
SPAN_GAP = 0.05
SPAN_SCAN = 16  # spans looked at for one with another text: further down, they are far from the best
# Spans kept per question across all its windows: ample for top_k disjoint answers (the API allows 20), and
# bounded, so reading a long text costs memory by the batch, not by the text.
SPANS_KEPT = 512


@dataclass
class Pending:
    """What one question has gathered so far from the windows read for it."""

    spans: dict[tuple[int, int, int], float] = field(default_factory=dict)  # (doc, start, end) -> score
    null: float = math.inf
    logsumexp: float = -math.inf


class Reading:
    """One answer_batch call in steps: `step()` runs one forward pass (a length batch of windows) and returns
    how many windows it read, 0 when all are read; then `predictions()`. Dropping a Reading part-way
    costs nothing more: nothing runs between steps."""

    def __init__(
        self,
        reader: Any,  # the Reader: its backend, pad id and token types
        plan: ReadPlan,
        reads: list[tuple[int, int, str, str]],
        windows: Windows,
        batch_size: int,
        top_k: int,
        max_answer_len: int,
        decision: tuple[str, float | None],
        calibration: Calibration,
    ):
        self.reader = reader
        self.plan = plan
        self.reads = reads  # (item, doc, question, text) of every text read, after retrieval
        self.windows = windows
        self.top_k, self.max_answer_len = top_k, max_answer_len
        self.decision, self.calibration = decision, calibration
        self.batch_size = batch_size
        self.batches = length_batches(windows.lengths(), batch_size)
        self.done = 0  # batches run so far
        self.pending = [Pending() for _ in plan.items]
        self.backend = reader.backend
        self.reread_planned = False  # whether the fallback's re-read has been decided (once, at the end)

    def next_cost(self) -> int:
        """Tokens (rows x padded length) the next step makes the model read; 0 when none is left."""
        if not self._remaining():
            return 0
        index = self.batches[self.done]
        return len(index) * max(len(self.windows.ids[w]) for w in index)

    def _remaining(self) -> bool:
        """Whether a step is left to run; when the first reading is done, the fallback's re-read is planned
        first: the windows of the questions whose decision int8 noise could flip, read again from scratch."""
        if self.done < len(self.batches):
            return True
        fallback = getattr(self.reader.backend, "fallback", None)
        if self.reread_planned or fallback is None or self.decision[0] != "prior":
            return False
        self.reread_planned = True
        chosen = {
            i for i, (p, item) in enumerate(zip(self.pending, self.plan.items)) if self._near_edge(p, item)
        }
        if not chosen:
            return False
        for i in chosen:
            self.pending[i] = Pending()
        index = np.array([w for w, r in enumerate(self.windows.item) if self.reads[r][0] in chosen])
        self.batches += [index[b] for b in length_batches(self.windows.lengths()[index], self.batch_size)]
        self.backend = fallback()
        return True

    def _near_edge(self, p: Pending, item: tuple[str, Any]) -> bool:
        if not p.spans:
            return False
        _, answerable, _ = _decision(p, item[0], max(p.spans.values()), self.decision, self.calibration)
        if abs(answerable - 0.5) < FALLBACK_MARGIN:
            return True
        return answerable >= 0.5 and span_gap(p, item) < SPAN_GAP

    def step(self) -> int:
        if not self._remaining():
            return 0
        reader, windows, reads = self.reader, self.windows, self.reads
        index = self.batches[self.done]
        batch = pad_batch(windows, index, reader.pad_id, reader.token_types)
        start, end = self.backend.run({k: batch[k] for k in self.backend.input_names})
        offsets = pad_offsets(windows, index, batch["input_ids"].shape[1])
        candidates = max(CANDIDATES_PER_WINDOW, 2 * self.top_k + 2)
        spans = best_spans(
            start, end, offsets[:, :, 0] >= 0, top_k=candidates, max_answer_len=self.max_answer_len
        )
        for row, w in enumerate(index):
            item, doc, _, context = reads[windows.item[w]]
            _gather(self.pending[item], doc, context, offsets[row], spans, row)
        self.done += 1
        return len(index)

    def predictions(self) -> list[Prediction]:
        """The answers, in the caller's order, once every step has run."""
        if self._remaining():
            raise RuntimeError("Reading.predictions() before every step has run")
        items = self.plan.items
        return self.plan.restore(
            [
                finish(p, items[i], self.top_k, self.decision, self.calibration)
                for i, p in enumerate(self.pending)
            ]
        )


def _gather(p: Pending, doc: int, context: str, offsets: np.ndarray, spans: Any, row: int) -> None:
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
    if len(p.spans) > 2 * SPANS_KEPT:  # a long text: keep the best, so memory does not grow with the text
        p.spans = dict(sorted(p.spans.items(), key=lambda kv: (-kv[1], kv[0]))[:SPANS_KEPT])


def finish(
    p: Pending,
    item: tuple[str, Any],
    top_k: int,
    decision: tuple[str, float | None],
    calibration: Calibration,
) -> Prediction:
    ranked = sorted(p.spans.items(), key=lambda kv: (-kv[1], kv[0]))
    if not ranked:  # no window had a valid span (e.g. max_answer_len shorter than any token)
        return Prediction([], True, float("-inf"), answerable=0.0, answerable_prior=None)
    heads = _disjoint(ranked)
    features, answerable, prior = _decision(p, item[0], ranked[0][1], decision, calibration)
    if decision[0] == "threshold":
        no_answer = features["null_score_diff"] < decision[1]  # type: ignore[operator]
    else:
        no_answer = answerable < 0.5
    multi = not isinstance(item[1], str)
    answers: list[Answer] = []
    left = 1.0
    for (doc, a, b), score in heads[:top_k]:
        context = item[1][doc] if multi else item[1]
        # each answer's own calibrated score, never above a better one's nor past what they leave
        prob = min(
            calibration.span_score(_features(score, p, item[0])), left, answers[-1].score if answers else 1.0
        )
        left -= prob
        answers.append(Answer(context[a:b], a, b, prob, doc if multi else None))
    return Prediction(
        answers,
        bool(no_answer),
        features["null_score_diff"],
        answerable=answerable,
        answerable_prior=prior,
        features=features,
    )


def span_gap(p: Pending, item: tuple[str, Any]) -> float:
    """How far the best span's score lies above the best span with another text (inf: no such span).

    The same words found twice are one answer: a tie between them is not a choice int8 could get wrong."""
    ranked = heapq.nlargest(SPAN_SCAN, p.spans.items(), key=lambda kv: kv[1])
    if not ranked:
        return math.inf
    multi = not isinstance(item[1], str)

    def text(key: tuple[int, int, int]) -> str:
        doc, a, b = key
        return (item[1][doc] if multi else item[1])[a:b]

    best = text(ranked[0][0])
    return next((ranked[0][1] - score for key, score in ranked[1:] if text(key) != best), math.inf)


def _decision(
    p: Pending, question: str, top: float, decision: tuple[str, float | None], calibration: Calibration
) -> tuple[dict[str, float], float, float]:
    """The top span's features, `answerable` at the decision's prior (the card's if none), and that prior."""
    features = _features(top, p, question)
    prior = decision[1] if decision[0] == "prior" else None
    prior = calibration.default_prior if prior is None else prior
    return features, calibration.answerable_prob(features, prior), prior


def _features(top: float, p: Pending, question: str) -> dict[str, float]:
    """The raw scores of a question's top span that the calibrations read (calibration.py names them)."""
    return {
        "question_log_words": math.log(max(1, len(question.split()))),
        "null_score_diff": float(top - p.null),
        "span_log_share": float(top - p.logsumexp),
        "span_logit": share_logit(float(top - p.logsumexp)),
        "span_mass_diff": float(p.logsumexp - p.null),
        "log_share": float(top - np.logaddexp(p.logsumexp, p.null)),
    }


def _disjoint(ranked: list[tuple[tuple[int, int, int], float]]) -> list[tuple[tuple[int, int, int], float]]:
    """The spans (best first) that overlap no better span of the same document.

    "12 March 1849", "March 1849" and "on 12 March 1849" are one answer said three ways, not three chances:
    only the best of them is reported, so the answers of a prediction are disjoint.
    """
    heads: list[tuple[tuple[int, int, int], float]] = []
    for (doc, a, b), score in ranked:
        if not any(hd == doc and a < hb and ha < b for (hd, ha, hb), _ in heads):
            heads.append(((doc, a, b), score))
    return heads
