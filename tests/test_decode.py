"""Span decoding on hand-made logits: the pure functions, then the Reader's merging across windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scripted_backend import scripted_reader, token_id
from spanqa.reading.decode import _scan_graphemes, best_spans, char_span, whole_graphemes
from spanqa.reading.windows import Windower
from text_strategies import texts
from tiny_models import tiny_model_dir

NEG = -1e4


def logits(n: int, **peaks: float) -> np.ndarray:
    """A (1, n) row of NEG with the given positions (p3=2.0 sets position 3) raised."""
    row = np.full((1, n), NEG, dtype=np.float32)
    for name, value in peaks.items():
        row[0, int(name[1:])] = value
    return row


def all_valid(n: int) -> np.ndarray:
    valid = np.ones((1, n), dtype=bool)
    valid[0, 0] = False  # position 0 is CLS
    return valid


def spans_of(result, w: int = 0) -> list[tuple[int, int, float]]:
    return [
        (int(s), int(e), float(v))
        for s, e, v in zip(result.starts[w], result.ends[w], result.scores[w])
        if np.isfinite(v)
    ]


def brute_force(start, end, valid, max_answer_len):
    out = []
    for s in range(len(start)):
        for e in range(s, min(len(start), s + max_answer_len)):
            if valid[s] and valid[e]:
                out.append((float(start[s]) + float(end[e]), s, e))
    return out


def test_best_span_is_the_highest_start_plus_end():
    start, end = logits(8, p2=3.0, p5=1.0), logits(8, p4=2.0, p6=0.5)
    result = best_spans(start, end, all_valid(8), top_k=3, max_answer_len=30)
    assert spans_of(result)[0] == (2, 4, 5.0)
    assert spans_of(result)[1] == (2, 6, 3.5)


def test_ties_go_to_the_earlier_start_then_the_earlier_end():
    start, end = logits(10, p2=1.0, p4=1.0), logits(10, p5=1.0, p7=1.0)
    result = best_spans(start, end, all_valid(10), top_k=4, max_answer_len=30)
    assert [(s, e) for s, e, _ in spans_of(result)] == [(2, 5), (2, 7), (4, 5), (4, 7)]
    assert {v for _, _, v in spans_of(result)} == {2.0}


def test_end_before_start_is_never_a_span():
    start, end = (
        logits(8, p5=10.0, p2=0.5),
        logits(8, p2=10.0, p6=0.0),
    )  # the best end is before the best start
    result = best_spans(start, end, all_valid(8), top_k=20, max_answer_len=30)
    assert all(s <= e for s, e, _ in spans_of(result))
    assert spans_of(result)[0] == (2, 2, 10.5)  # start 2 + end 2 beats start 5 + end 6 (10 + 0)


def test_spans_longer_than_max_answer_len_are_never_returned():
    start, end = logits(40, p1=9.0, p3=0.0), logits(40, p20=9.0, p5=0.0)
    for max_len in (1, 3, 5, 19, 20):
        result = best_spans(start, end, all_valid(40), top_k=5, max_answer_len=max_len)
        assert all(e - s + 1 <= max_len for s, e, _ in spans_of(result))
        assert ((1, 20) in [(s, e) for s, e, _ in spans_of(result)]) == (max_len >= 20)


def test_tokens_outside_the_context_never_start_or_end_a_span():
    start, end = logits(8, p0=50.0, p1=40.0, p3=1.0), logits(8, p0=50.0, p7=40.0, p4=1.0)
    valid = np.array([[False, False, True, True, True, True, True, False]])
    result = best_spans(start, end, valid, top_k=50, max_answer_len=30)
    assert all(valid[0, s] and valid[0, e] for s, e, _ in spans_of(result))
    assert spans_of(result)[0] == (3, 4, 2.0)
    assert float(result.null[0]) == 100.0  # CLS start + end, whether or not CLS is valid


def test_fewer_valid_spans_than_top_k_pads_with_minus_inf():
    valid = np.zeros((1, 6), dtype=bool)
    valid[0, 2] = True
    result = best_spans(logits(6, p2=1.0), logits(6, p2=1.0), valid, top_k=4, max_answer_len=30)
    assert spans_of(result) == [(2, 2, 2.0)]
    assert np.isneginf(result.scores[0, 1:]).all()


def test_a_window_without_context_has_no_spans_and_zero_probability_mass():
    valid = np.zeros((1, 5), dtype=bool)
    result = best_spans(logits(5), logits(5), valid, top_k=2, max_answer_len=30)
    assert spans_of(result) == []
    assert np.isneginf(result.logsumexp[0])


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(2, 24),
    max_answer_len=st.integers(1, 30),
    top_k=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    integer_logits=st.booleans(),  # small integers make many exact ties
)
def test_best_spans_agree_with_brute_force(n, max_answer_len, top_k, seed, integer_logits):
    rng = np.random.default_rng(seed)
    draw = (lambda: rng.integers(-3, 4, size=(2, n))) if integer_logits else (lambda: rng.normal(size=(2, n)))
    start, end = draw().astype(np.float32)
    valid = rng.random(n) < 0.8
    result = best_spans(start[None], end[None], valid[None], top_k=top_k, max_answer_len=max_answer_len)
    expected = sorted(brute_force(start, end, valid, max_answer_len), key=lambda t: (-t[0], t[1], t[2]))
    assert [(s, e) for s, e, _ in spans_of(result)] == [(s, e) for _, s, e in expected[:top_k]]
    assert [v for _, _, v in spans_of(result)] == pytest.approx([v for v, _, _ in expected[:top_k]])
    total = np.logaddexp.reduce([v for v, _, _ in expected]) if expected else -np.inf
    assert float(result.logsumexp[0]) == pytest.approx(total, rel=1e-5, abs=1e-5)


def test_char_span_trims_whitespace_and_refuses_whitespace_only():
    context = "ab  cd \n"
    offsets = np.array([[-1, -1], [0, 2], [2, 4], [4, 6], [6, 8]])
    assert char_span(context, offsets, 1, 3) == (0, 6)
    assert char_span(context, offsets, 2, 3) == (4, 6)  # leading spaces dropped
    assert char_span(context, offsets, 3, 4) == (4, 6)  # trailing space and newline dropped
    assert char_span(context, offsets, 4, 4) is None  # whitespace only
    assert char_span(context, offsets, 0, 1) is None  # not a context token


def test_spans_are_widened_to_whole_graphemes():
    text = "Cafe\u0301 👩\u200d🔬 🇫🇷🇩🇪 x \u0301y"
    assert whole_graphemes(text, 0, 4) == (0, 5)  # the combining accent stays with its letter
    assert whole_graphemes(text, 7, 8) == (6, 9)  # a ZWJ emoji sequence stays whole
    assert whole_graphemes(text, 11, 13) == (10, 14)  # no half flags
    assert whole_graphemes(text, 15, 16) == (15, 16)  # nothing to widen
    assert whole_graphemes(text, 17, 19) == (17, 19)  # " \u0301" is one grapheme: never widen onto a space
    offsets = np.array([[-1, -1], [0, 4], [5, 6]])
    assert char_span(text, offsets, 1, 1) == (0, 5)


@settings(max_examples=300, deadline=None)
@given(texts(), st.data())
def test_the_ascii_shortcut_widens_as_the_full_scan_does(text: str, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, len(text)))
    b = data.draw(st.integers(a, len(text)))
    assert whole_graphemes(text, a, b) == _scan_graphemes(text, a, b)


# ---- across windows, through the Reader with scripted logits ----------------------------------------------

CONTEXT = " ".join(["The lighthouse stands on a granite headland at the mouth of the harbour."] * 3)
QUESTION = "Who built the tower?"


@pytest.fixture(scope="module")
def bert_dir():
    return tiny_model_dir("bert")


def test_an_answer_in_the_overlap_of_two_windows_is_reported_once(bert_dir):
    reader, _ = scripted_reader(bert_dir)
    granite = token_id(reader, "granite")
    reader.backend.start[granite] = 4.0
    reader.backend.end[granite] = 4.0
    windows = Windower(reader.tokenizer, 24, 8)([QUESTION], [CONTEXT])
    seen = sum(ids.tolist().count(granite) for ids in windows.ids)
    assert seen > CONTEXT.count("granite"), "some 'granite' must be in two windows"
    pred = reader.answer(QUESTION, CONTEXT, top_k=10, max_seq_len=24, doc_stride=8, retrieve="never")
    spans = [(a.start, a.end) for a in pred.answers]
    assert len(spans) == len(set(spans))
    granites = [(a.start, a.end) for a in pred.answers if a.text == "granite"]
    assert granites == sorted(
        (i, i + len("granite")) for i in range(len(CONTEXT)) if CONTEXT.startswith("granite", i)
    )
    assert pred.null_score_diff == pytest.approx(8.0)


def test_span_scores_compare_across_windows_and_null_is_the_minimum_cls(bert_dir):
    def null_of_window(ids: np.ndarray) -> float:  # a different null for every window
        return float(ids.sum() % 7) - 3.0

    reader, backend = scripted_reader(bert_dir, null=null_of_window)
    backend.start[token_id(reader, "harbour")] = 2.5
    backend.end[token_id(reader, "harbour")] = 1.25
    backend.start[token_id(reader, "granite")] = 1.0
    backend.end[token_id(reader, "granite")] = 0.5
    pred = reader.answer(QUESTION, CONTEXT, top_k=2, max_seq_len=24, doc_stride=8, retrieve="never")
    windows = Windower(reader.tokenizer, 24, 8)([QUESTION], [CONTEXT])
    null = min(null_of_window(ids) for ids in windows.ids)
    assert [a.text for a in pred.answers] == ["harbour", "harbour"]
    assert pred.null_score_diff == 3.75 - null


@pytest.mark.parametrize(
    ("null", "threshold", "no_answer"),
    [(3.0, 0.0, False), (5.0, 0.0, True), (4.0, 0.0, False), (4.0, 0.5, True), (6.0, -2.0, False)],
)
def test_null_wins_only_below_the_threshold(bert_dir, null, threshold, no_answer):
    reader, backend = scripted_reader(bert_dir, null=null)
    backend.start[token_id(reader, "granite")] = 2.0
    backend.end[token_id(reader, "granite")] = 2.0
    pred = reader.answer(QUESTION, CONTEXT, null_threshold=threshold, retrieve="never")
    assert pred.null_score_diff == 4.0 - null
    assert pred.no_answer is no_answer
    assert pred.answers[0].text == "granite"  # the best guess is kept either way
    assert (pred.best is None) is no_answer


def test_the_threshold_of_the_model_card_is_the_default(bert_dir):
    reader, backend = scripted_reader(bert_dir, null=3.0)
    backend.start[token_id(reader, "granite")] = 2.0
    backend.end[token_id(reader, "granite")] = 2.0
    assert reader.answer(QUESTION, CONTEXT).no_answer is False  # diff 1.0, no card: threshold 0.0
    reader.card["null_threshold"] = 1.5
    assert reader.answer(QUESTION, CONTEXT).no_answer is True
    assert reader.answer(QUESTION, CONTEXT, null_threshold=0.5).no_answer is False


# once: with the same scores for every occurrence of a word, "granite ... granite" would tie with "granite"
SENTENCE = CONTEXT[: CONTEXT.index(".") + 1]


def test_int8_borderline_questions_are_read_again_by_the_fallback(bert_dir):
    from scripted_backend import ScriptedBackend
    from spanqa.reading.steps import FALLBACK_MARGIN

    reader, int8 = scripted_reader(bert_dir)
    granite, harbour, tower = (token_id(reader, w) for w in ("granite", "harbour", "tower"))
    int8.start[granite] = int8.end[granite] = 2.0  # int8 reads "granite" ...
    # ... a question about the tower on the edge of the decision, the others far from it
    int8.null = lambda ids: 4.0 if tower in ids else -4.0
    clear = ("Who was the engineer?", SENTENCE)
    edge = (QUESTION, SENTENCE)  # about the tower
    alone = reader.answer_batch([clear, edge], max_seq_len=128, retrieve="never")  # no fallback: as read
    assert abs(alone[1].answerable - 0.5) < FALLBACK_MARGIN < abs(alone[0].answerable - 0.5)
    vocab = reader.tokenizer.get_vocab_size()
    fp32 = ScriptedBackend(vocab, start={harbour: 2.0}, end={harbour: 2.0}, null=-6.0)
    made = []
    int8.fallback = lambda: made.append(1) or fp32
    preds = reader.answer_batch([clear, edge, clear], max_seq_len=128, retrieve="never")
    assert [p.answers[0].text for p in preds] == ["granite", "harbour", "granite"]
    assert preds[1].null_score_diff == 10.0 and not preds[1].no_answer  # fp32's reading, from scratch
    assert fp32.batch_rows == [1] and made == [1]  # the edge question's one window, one fp32 backend

    # stepped as the HTTP service steps it: the re-read is more work before the reading is done
    fp32.batch_rows.clear()
    reading = reader.reading([clear, edge], max_seq_len=128, retrieve="never")
    costs = []
    while reading.next_cost():
        costs.append(reading.next_cost())
        reading.step()
    assert len(costs) == 2 and fp32.batch_rows == [1]  # one int8 pass of both windows, one fp32 pass
    assert [p.answers[0].text for p in reading.predictions()] == ["granite", "harbour"]

    # a raw threshold decides on raw scores: nothing is read again; nor when no question is near the edge
    fp32.batch_rows.clear()
    preds = reader.answer_batch([clear, edge], max_seq_len=128, null_threshold=0.0, retrieve="never")
    assert [p.answers[0].text for p in preds] == ["granite", "granite"] and fp32.batch_rows == []
    made.clear()
    assert reader.answer(*clear, max_seq_len=128, retrieve="never").answers[0].text == "granite"
    assert made == [] and fp32.batch_rows == []


def test_int8_questions_between_two_close_spans_are_read_again(bert_dir):
    from scripted_backend import ScriptedBackend
    from spanqa.reading.steps import SPAN_GAP

    reader, int8 = scripted_reader(bert_dir, null=-6.0)  # answered, far from the no-answer decision
    granite, lighthouse = token_id(reader, "granite"), token_id(reader, "lighthouse")
    int8.start[granite] = int8.end[granite] = 2.0
    vocab = reader.tokenizer.get_vocab_size()
    fp32 = ScriptedBackend(vocab, start={lighthouse: 2.0}, end={lighthouse: 2.0}, null=-6.0)
    int8.fallback = lambda: fp32
    for gap, read_again in ((0.5 * SPAN_GAP, True), (2 * SPAN_GAP, False)):
        # "lighthouse" scores `gap` below "granite"; "lighthouse ... granite" 0.5 below (start 1.5 + end 2.0)
        int8.start[lighthouse], int8.end[lighthouse] = 1.5, 2.5 - gap
        fp32.batch_rows.clear()
        pred = reader.answer(QUESTION, SENTENCE, max_seq_len=128, retrieve="never")
        assert 0.5 + 0.02 < pred.answerable
        assert pred.answers[0].text == ("lighthouse" if read_again else "granite")
        assert fp32.batch_rows == ([1] if read_again else [])


def test_the_span_gap_looks_past_the_same_words_found_again():
    from spanqa.reading.steps import Pending, span_gap

    text = "granite and granite, then basalt"
    p = Pending(spans={(0, 0, 7): 4.0, (0, 12, 19): 3.99, (0, 26, 32): 3.5})
    assert span_gap(p, ("Which stone?", text)) == pytest.approx(0.5)  # basalt, not the second granite
    assert span_gap(p, ("Which stone?", [text])) == pytest.approx(0.5)  # several documents alike
    assert span_gap(Pending(spans={(0, 0, 7): 4.0, (0, 12, 19): 3.0}), ("q", text)) == float("inf")
