"""Offsets are sacred: every answer is an exact span of the caller's own string, made of context tokens only.

Property-tested over random Unicode on three tokenizer families (WordPiece, byte-level BPE, SentencePiece
Unigram). Each answer is checked against the windows the reader read, rebuilt independently here.
"""

from __future__ import annotations

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanqa import InputError
from spanqa.reading.windows import Windower
from text_strategies import TRICKY, questions, texts
from tiny_models import tiny_reader

PROPERTY_KINDS = ("bert", "roberta", "deberta-v2")
EXAMPLES = 500

_windowers: dict[tuple[str, int, int], Windower] = {}


def windows_of(kind: str, question: str, context: str, max_seq_len: int, doc_stride: int):
    key = (kind, max_seq_len, doc_stride)
    if key not in _windowers:  # its own windower, so the check does not reuse the reader's state
        _windowers[key] = Windower(tiny_reader(kind).tokenizer, max_seq_len, doc_stride)
    return _windowers[key]([question], [context])


def special_ids(kind: str) -> set[int]:
    """Ids the model reads as structure: the pair template's CLS/SEP tokens and padding ([UNK] is text)."""
    reader = tiny_reader(kind)
    enc = reader.tokenizer.encode("a", "b")
    return {i for i, m in zip(enc.ids, enc.special_tokens_mask) if m} | {reader.pad_id}


def graphemes(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in regex.finditer(r"\X", text)]


def token_spans_for(
    answer_start: int, answer_end: int, context: str, windows, kind: str, max_answer_len: int
):
    """(window, first token, last token) of every way context tokens can make this exact answer.

    A token may start inside the answer's first grapheme or end inside its last one: the reader widens
    spans so they never cut a grapheme (an accent from its letter, half an emoji).
    """
    specials = special_ids(kind)
    clusters = graphemes(context)
    first_end = next(b for a, b in clusters if a <= answer_start < b)
    last_start = next(a for a, b in clusters if a < answer_end <= b)
    found = []
    for w, off in enumerate(windows.offsets):
        ctx = np.nonzero(off[:, 0] >= 0)[0]
        if len(ctx) == 0:
            continue
        lo, hi = ctx[0], ctx[-1]  # the context's tokens lie between these; question and specials outside
        firsts = [
            s
            for s in ctx
            if (off[s, 0] <= answer_start and not context[off[s, 0] : answer_start].strip())
            or answer_start < off[s, 0] < first_end
        ]
        lasts = [
            e
            for e in ctx
            if (off[e, 1] >= answer_end and not context[answer_end : off[e, 1]].strip())
            or last_start < off[e, 1] < answer_end
        ]
        for s in firsts:
            for e in lasts:
                ids = windows.ids[w][s : e + 1]
                if lo <= s <= e <= hi and e - s < max_answer_len and not specials.intersection(ids.tolist()):
                    found.append((w, s, e))
    return found


def check_answers(kind, question, docs, pred, max_seq_len, doc_stride, max_answer_len, top_k):
    assert isinstance(pred.no_answer, bool)
    assert len(pred.answers) <= top_k
    scores = [a.score for a in pred.answers]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len({(a.doc, a.start, a.end) for a in pred.answers}) == len(pred.answers), "an answer is repeated"
    if pred.answers:
        assert np.isfinite(pred.null_score_diff)
    for a in pred.answers:
        context = docs[a.doc or 0]
        assert (a.doc is None) == (len(docs) == 1)
        assert type(a.start) is int and type(a.end) is int
        assert 0 <= a.start < a.end <= len(context)
        assert context[a.start : a.end] == a.text
        assert not a.text[0].isspace() and not a.text[-1].isspace(), repr(a.text)
        cuts = {first for first, _ in graphemes(context)} | {len(context)}
        assert a.start in cuts or context[a.start - 1].isspace(), f"{a} begins inside a grapheme"
        assert a.end in cuts, f"{a} ends inside a grapheme"
        windows = windows_of(kind, question, context, max_seq_len, doc_stride)
        assert token_spans_for(a.start, a.end, context, windows, kind, max_answer_len), (
            f"{a} is not made of context tokens of any window"
        )


@pytest.mark.parametrize("kind", PROPERTY_KINDS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    question=questions(),
    docs=st.lists(texts(), min_size=1, max_size=2),
    max_seq_len=st.sampled_from([40, 64, 128]),
    doc_stride=st.integers(0, 24),
    max_answer_len=st.integers(1, 30),
    top_k=st.integers(1, 5),
)
def test_answers_are_exact_spans_of_context_tokens(
    kind, question, docs, max_seq_len, doc_stride, max_answer_len, top_k
):
    reader = tiny_reader(kind)
    options = dict(max_seq_len=max_seq_len, doc_stride=doc_stride, max_answer_len=max_answer_len, top_k=top_k)
    options["retrieve"] = "never"  # the windows checked here are those of the whole text
    try:
        if len(docs) == 1:
            pred = reader.answer(question, docs[0], **options)
        else:
            pred = reader.answer(question, contexts=docs, **options)
    except InputError as e:  # only a question too long for the window may be refused
        n = len(reader.tokenizer.encode(question, add_special_tokens=False).ids)
        limit = Windower(reader.tokenizer, max_seq_len, doc_stride).max_question_tokens
        assert "question is" in str(e) and n > limit, str(e)
        return
    check_answers(kind, question, docs, pred, max_seq_len, doc_stride, max_answer_len, top_k)


@pytest.mark.parametrize("kind", PROPERTY_KINDS)
@pytest.mark.parametrize("piece", TRICKY)
def test_each_tricky_piece_between_words(kind, piece):
    """Every hard case once, deterministically, in the middle and at both ends of a context."""
    reader = tiny_reader(kind)
    question = f"What is {piece}?"
    for context in (f"The lamp {piece} burned whale oil.", f"{piece} lamp", f"lamp{piece}"):
        if not context.strip():
            continue
        pred = reader.answer(question, context, top_k=5, max_seq_len=64, doc_stride=8, retrieve="never")
        check_answers(kind, question, [context], pred, 64, 8, 30, 5)


@pytest.mark.parametrize("kind", PROPERTY_KINDS)
def test_special_token_text_in_a_context_is_plain_text(kind):
    """ "[SEP]" or "</s>" typed in a context must not become a separator the model sees."""
    reader = tiny_reader(kind)
    specials = special_ids(kind)
    context = "The lamp [SEP] burned </s> whale [CLS] oil <s> and <pad> more [PAD]."
    windows = windows_of(kind, "[SEP] </s>?", context, 64, 8)
    for ids, off in zip(windows.ids, windows.offsets):
        ctx = np.nonzero(off[:, 0] >= 0)[0]
        inside = ids[ctx[0] : ctx[-1] + 1].tolist()
        assert not specials.intersection(inside)
        assert sum(i in specials for i in ids.tolist()) == reader.tokenizer.num_special_tokens_to_add(True)
