"""Training labels from the offset mapping: the answer's first and last token in each window, else CLS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa.evaluation.squad import GoldAnswer, locate_answer
from spanqa.reading.windows import Windower, answer_tokens
from spanqa.training.data import TrainItem, label_windows

CONTEXT = (
    "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil. "
    "Construction began in 1846 under the engineer Margaret Hale."
)
QUESTION = "When was it lit?"


@pytest.fixture(scope="module")
def tokenizer():
    from tiny_models import _wordpiece_tokenizer

    return _wordpiece_tokenizer()


@pytest.fixture(scope="module")
def windower(tokenizer):
    # short windows with a 4-token overlap, so that one paragraph makes several windows
    return Windower(tokenizer, max_seq_len=24, doc_stride=4)


def labels_for(windower, context: str, span: tuple[int, int] | None):
    windows, labels = label_windows(windower, [TrainItem(QUESTION, context, span)])
    return windows, labels


def context_tokens(offsets: np.ndarray) -> np.ndarray:
    return np.nonzero(offsets[:, 0] >= 0)[0]


def covers(offsets: np.ndarray, span: tuple[int, int]) -> bool:
    ctx = context_tokens(offsets)
    return offsets[ctx[0], 0] <= span[0] and offsets[ctx[-1], 1] >= span[1]


def test_setup_makes_overlapping_windows(windower):
    windows, _ = labels_for(windower, CONTEXT, None)
    assert len(windows) >= 2
    first, second = (set(map(tuple, w[context_tokens(w)].tolist())) for w in windows.offsets[:2])
    assert len(first & second) == 4  # the overlap the tests below rely on


def test_answer_at_the_end_of_a_window(windower):
    windows, _ = labels_for(windower, CONTEXT, None)
    w0 = windows.offsets[0]
    last = context_tokens(w0)[-1]
    span = (int(w0[last, 0]), int(w0[last, 1]))
    windows, labels = labels_for(windower, CONTEXT, span)
    assert tuple(labels[0]) == (last, last)
    for w, (s, e) in enumerate(labels):
        if covers(windows.offsets[w], span):
            assert (windows.offsets[w][s, 0], windows.offsets[w][e, 1]) == span
        else:
            assert (s, e) == (0, 0)


def test_answer_inside_the_overlap_is_labelled_in_both_windows(windower):
    windows, _ = labels_for(windower, CONTEXT, None)
    shared = sorted(
        set(map(tuple, windows.offsets[0][context_tokens(windows.offsets[0])].tolist()))
        & set(map(tuple, windows.offsets[1][context_tokens(windows.offsets[1])].tolist()))
    )
    span = (shared[1][0], shared[2][1])  # two tokens in the middle of the overlap
    windows, labels = labels_for(windower, CONTEXT, span)
    for w in (0, 1):
        s, e = labels[w]
        assert s > 0 and e == s + 1
        assert (windows.offsets[w][s, 0], windows.offsets[w][e, 1]) == span


def test_answer_split_across_windows_points_at_cls(windower):
    windows, _ = labels_for(windower, CONTEXT, None)
    w0, w1 = windows.offsets[0], windows.offsets[1]
    # from the last token before window 1 starts to the first token after window 0 ends: in neither
    before = [t for t in context_tokens(w0) if w0[t, 1] <= w1[context_tokens(w1)[0], 0]]
    after = [t for t in context_tokens(w1) if w1[t, 0] >= w0[context_tokens(w0)[-1], 1]]
    assert before and after
    span = (int(w0[before[-1], 0]), int(w1[after[0], 1]))
    windows, labels = labels_for(windower, CONTEXT, span)
    assert not any(covers(o, span) for o in windows.offsets)
    assert (labels == 0).all()


def test_unanswerable_points_at_cls_in_every_window(windower):
    windows, labels = labels_for(windower, CONTEXT, None)
    assert labels.shape == (len(windows), 2)
    assert (labels == 0).all()


def test_subword_split_word(tokenizer):
    context = "The keeper was Hallsworth Quennell, who never missed a night."
    enc = tokenizer.encode(context)
    start = context.index("Hallsworth")
    pieces = [
        i for i, (a, b) in enumerate(enc.offsets) if a >= start and b <= start + len("Hallsworth") and b > a
    ]
    assert len(pieces) > 1  # the tiny vocabulary splits the name into several pieces
    windower = Windower(tokenizer, max_seq_len=64, doc_stride=16)
    span = (start, start + len("Hallsworth Quennell"))
    windows, labels = labels_for(windower, context, span)
    s, e = labels[0]
    off = windows.offsets[0]
    assert (off[s, 0], off[e, 1]) == span
    assert e - s + 1 > 2  # several pieces per word


def test_answer_inside_a_token_takes_the_whole_token(tokenizer):
    # "light" is only part of the token "lighthouse": the label is that token, which contains the answer
    windower = Windower(tokenizer, max_seq_len=64, doc_stride=16)
    start = CONTEXT.index("light")
    windows, labels = labels_for(windower, CONTEXT, (start, start + len("light")))
    s, e = labels[0]
    off = windows.offsets[0]
    assert s == e > 0
    assert CONTEXT[off[s, 0] : off[s, 1]] == "lighthouse"


def test_leading_spaces_in_the_gold_answer(tokenizer):
    at = CONTEXT.index(" 1849")
    span = locate_answer(CONTEXT, GoldAnswer("  1849", at - 1))
    assert span is not None and CONTEXT[span[0] : span[1]] == "1849"
    windower = Windower(tokenizer, max_seq_len=64, doc_stride=16)
    windows, labels = labels_for(windower, CONTEXT, span)
    s, e = labels[0]
    assert s == e and CONTEXT[windows.offsets[0][s, 0] : windows.offsets[0][s, 1]] == "1849"


def test_empty_or_absent_answer_points_at_cls(tokenizer):
    windower = Windower(tokenizer, max_seq_len=64, doc_stride=16)
    off = windower([QUESTION], [CONTEXT]).offsets[0]
    assert answer_tokens(off, 10, 10) == (0, 0)
    assert answer_tokens(off, len(CONTEXT) + 5, len(CONTEXT) + 9) == (0, 0)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_token_aligned_answers_round_trip_in_every_window_that_holds_them(windower, data):
    full = windower.tokenizer.encode(CONTEXT).offsets
    words = [(a, b) for a, b in full if b > a]
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(i, min(len(words) - 1, i + 5)))
    span = (words[i][0], words[j][1])
    windows, labels = labels_for(windower, CONTEXT, span)
    assert any(labels[:, 0] > 0) == any(covers(o, span) for o in windows.offsets)
    for w, (s, e) in enumerate(labels):
        off = windows.offsets[w]
        if covers(off, span):
            assert 0 < s <= e
            assert (off[s, 0], off[e, 1]) == span
            assert off[s - 1, 1] <= span[0] or off[s - 1, 0] < 0  # the first token of the answer, not before
        else:
            assert (s, e) == (0, 0)
