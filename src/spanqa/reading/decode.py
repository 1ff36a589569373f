"""Start/end logits -> scored spans. Pure functions on numpy arrays.

A span's score is start_logit[s] + end_logit[e], raw, so scores compare across windows and documents.
The null score of a window is the same sum at the CLS token (position 0); a question's null score is the
minimum over its windows, the window most sure that an answer exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

NEG_INF = np.float32(-np.inf)


@dataclass
class WindowSpans:
    """The best spans of a batch of windows: arrays of shape (windows, k), best first; -inf pads."""

    starts: np.ndarray
    ends: np.ndarray
    scores: np.ndarray
    null: np.ndarray  # (windows,) CLS start + end logit
    logsumexp: np.ndarray  # (windows,) log of the summed exp(score) of every valid span


def span_scores(start: np.ndarray, end: np.ndarray, valid: np.ndarray, max_answer_len: int) -> np.ndarray:
    """Scores of every span as a band (windows, L, max_answer_len): [w, s, d] is the span s..s+d.

    Spans that leave the context (question, special or padding tokens) score -inf; so do spans that end
    before they start or are longer than max_answer_len, since the band cannot express them.
    """
    n, length = start.shape
    width = max(1, min(max_answer_len, length))
    s = np.where(valid, start, NEG_INF).astype(np.float32, copy=False)
    e = np.where(valid, end, NEG_INF).astype(np.float32, copy=False)
    e = np.concatenate([e, np.full((n, width - 1), NEG_INF, dtype=np.float32)], axis=1)
    idx = np.arange(length)[:, None] + np.arange(width)[None, :]
    return s[:, :, None] + e[:, idx]


def best_spans(
    start: np.ndarray, end: np.ndarray, valid: np.ndarray, *, top_k: int, max_answer_len: int
) -> WindowSpans:
    """The top_k spans of each window (ties: earlier start, then earlier end, first)."""
    start = np.asarray(start, dtype=np.float32)
    end = np.asarray(end, dtype=np.float32)
    band = span_scores(start, end, valid, max_answer_len)
    n, _length, width = band.shape
    flat = band.reshape(n, -1)
    k = max(1, min(top_k, flat.shape[1]))
    starts = np.zeros((n, k), dtype=np.int64)
    ends = np.zeros((n, k), dtype=np.int64)
    scores = np.full((n, k), NEG_INF, dtype=np.float32)
    kth = np.partition(flat, flat.shape[1] - k, axis=1)[:, flat.shape[1] - k]
    for w in range(n):
        if not np.isfinite(kth[w]):  # fewer than k valid spans: take all of them
            cand = np.nonzero(np.isfinite(flat[w]))[0]
        else:
            cand = np.nonzero(flat[w] >= kth[w])[0]  # every tie at the k-th score, in index order
        cand = cand[np.argsort(-flat[w, cand], kind="stable")][:k]
        m = len(cand)
        starts[w, :m] = cand // width
        ends[w, :m] = cand // width + cand % width
        scores[w, :m] = flat[w, cand]
    return WindowSpans(starts, ends, scores, start[:, 0] + end[:, 0], _logsumexp(flat))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = np.max(x, axis=1)
    safe = np.where(np.isfinite(top), top, 0.0).astype(np.float32)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.sum(np.exp(x - safe[:, None]), axis=1))


def char_span(context: str, offsets: np.ndarray, s: int, e: int) -> tuple[int, int] | None:
    """Characters of tokens s..e, without surrounding whitespace, widened to whole graphemes.

    None if only whitespace remains.
    """
    a, b = int(offsets[s, 0]), int(offsets[e, 1])
    if a < 0 or b <= a:
        return None
    while a < b and context[a].isspace():
        a += 1
    while b > a and context[b - 1].isspace():
        b -= 1
    return whole_graphemes(context, a, b) if b > a else None


# Graphemes longer than this (stacks of combining marks) may be cut; a bound keeps the work per span small.
_GRAPHEME_REACH = 32


@cache
def _grapheme_pattern() -> Any:
    import regex  # a dependency of transformers; Python's re has no grapheme clusters

    return regex.compile(r"\X")


def whole_graphemes(context: str, a: int, b: int) -> tuple[int, int]:
    """[a, b) widened to cut no grapheme: a letter keeps its accents, an emoji sequence or flag stays whole.

    Tokenizers split text by bytes or code points (byte-level BPE parts "e" from a combining accent; NFC
    normalizers map "é" back to the "e" alone), so token edges can fall inside what a reader sees as one
    character. A widened edge that would make the span begin or end with whitespace is left as it was.
    """
    if context[max(0, a - 1) : a + 1].isascii() and context[max(0, b - 1) : b + 1].isascii():
        # Between two ASCII characters there is always a grapheme boundary (ASCII has no combining marks,
        # joiners or prepends; CR LF is whitespace and never widens): nothing to scan. Most spans in most
        # texts end here, which matters since every candidate span of every question passes through.
        return a, b
    return _scan_graphemes(context, a, b)


def _scan_graphemes(context: str, a: int, b: int) -> tuple[int, int]:
    lo, hi = max(0, a - _GRAPHEME_REACH), min(len(context), b + _GRAPHEME_REACH)
    start, end = a, b
    for m in _grapheme_pattern().finditer(context, lo, hi):
        first, last = m.start(), m.end()
        if first < a < last and not context[first].isspace():
            start = first
        if first < b < last and not context[last - 1].isspace():
            end = last
        if first >= b:
            break
    return start, end
