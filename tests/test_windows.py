"""Windowing: the whole question in every window, the context cut with a fixed overlap, limits enforced."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from scripted_backend import scripted_reader, token_id
from spanqa import InputError
from spanqa.errors import DependencyError
from spanqa.reading.windows import Windower, answer_tokens, check_tokenizers
from tiny_models import CORPUS, KINDS, tiny_model_dir, tiny_reader

QUESTION = "When was the lighthouse first lit?"
LONG_CONTEXT = " ".join(CORPUS * 4)


def full_pair(tokenizer, question: str, context: str):
    tokenizer.no_truncation()
    tokenizer.encode_special_tokens = True
    return tokenizer.encode(question, context)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("max_seq_len", "doc_stride"), [(32, 0), (32, 8), (48, 16), (48, 128), (128, 128)])
def test_windows_hold_the_whole_question_and_step_through_the_context(kind, max_seq_len, doc_stride):
    tok = tiny_reader(kind).tokenizer
    windows = Windower(tok, max_seq_len, doc_stride)([QUESTION], [LONG_CONTEXT])
    full = full_pair(tok, QUESTION, LONG_CONTEXT)
    seq = [s for s in full.sequence_ids]
    head = seq.index(1)  # CLS, the question and its separators come before the context
    tail = len(seq) - 1 - max(i for i, s in enumerate(seq) if s == 1)
    context_ids = full.ids[head : len(full.ids) - tail]
    q_len = len(tok.encode(QUESTION, add_special_tokens=False).ids)
    room = max_seq_len - tok.num_special_tokens_to_add(True) - q_len
    stride = min(doc_stride, room // 2)

    assert len(windows) > 1 and set(windows.item) == {0}
    pos = 0
    for w, ids in enumerate(windows.ids):
        ids = ids.tolist()
        assert len(ids) <= max_seq_len
        assert ids[0] == full.ids[0]  # CLS at position 0: the model's "no answer" token
        assert ids[:head] == full.ids[:head] and ids[len(ids) - tail :] == full.ids[len(full.ids) - tail :]
        part = ids[head : len(ids) - tail]
        assert part == context_ids[pos : pos + len(part)], "windows must be consecutive slices"
        if w < len(windows) - 1:
            assert len(ids) == max_seq_len and len(part) == room
            pos += room - stride  # the next window repeats the last `stride` tokens
        else:
            assert pos + len(part) == len(context_ids), "the last window must reach the end"
        # offsets: -1 outside the context, exact character spans inside it
        off = windows.offsets[w]
        assert (off[:head] == -1).all() and (off[len(ids) - tail :] == -1).all()
        # (zero-width pieces, a lone "▁" or "Ġ", are -1 too: they can neither start nor end an answer)
        for a, b in off[head : len(ids) - tail]:
            assert a == b == -1 or 0 <= a < b <= len(LONG_CONTEXT)


@pytest.mark.parametrize("kind", KINDS)
def test_pad_ids_and_token_types_are_what_each_architecture_expects(kind):
    import json

    reader = tiny_reader(kind)
    config = json.loads((tiny_model_dir(kind) / "config.json").read_text())
    pad_token = "<pad>" if kind in ("roberta", "longformer") else "[PAD]"
    assert reader.pad_id == reader.tokenizer.token_to_id(pad_token) == config["pad_token_id"]
    windows = Windower(reader.tokenizer, 48, 16)([QUESTION], [LONG_CONTEXT])
    types = np.concatenate(windows.type_ids)
    takes_types = "token_type_ids" in reader.backend.input_names
    assert takes_types == (kind not in ("distilbert",))
    if kind in ("bert", "electra"):  # segment A = 0, segment B = 1, as these models were trained
        for t, off in zip(windows.type_ids, windows.offsets):
            assert (t[off[:, 0] >= 0] == 1).all() and t[0] == 0
    # models with fewer than two token types are fed zeros (DeBERTa-v3 has none and would ignore them)
    if takes_types:
        assert reader.token_types == (kind in ("bert", "electra"))
    if takes_types and reader.token_types:  # an id beyond the embedding table would crash the model
        assert types.max() < config["type_vocab_size"]
    if kind in ("roberta", "longformer"):
        sep = reader.tokenizer.token_to_id("</s>")
        assert all((ids == sep).sum() == 3 for ids in windows.ids)  # Longformer asserts exactly three


@pytest.mark.parametrize("kind", ["bert", "roberta", "deberta-v2"])
def test_a_question_too_long_for_the_window_names_the_limits(kind):
    tok = tiny_reader(kind).tokenizer
    windower = Windower(tok, 40, 8)
    words = "lighthouse harbour granite engineer".split()
    question = ""
    while len(tok.encode(question, add_special_tokens=False).ids) <= windower.max_question_tokens:
        fits = question
        question = f"{question} {words[len(question) % 4]}".strip()
    assert len(windower([fits], [LONG_CONTEXT])) > 1  # the longest question that fits is read
    with pytest.raises(InputError) as err:
        windower([question], [LONG_CONTEXT])
    n = len(tok.encode(question, add_special_tokens=False).ids)
    assert f"question is {n} tokens" in str(err.value)
    assert "max_seq_len=40" in str(err.value) and f"at most {windower.max_question_tokens}" in str(err.value)
    with pytest.raises(InputError, match="max_seq_len=40"):
        tiny_reader(kind).answer(question, LONG_CONTEXT, max_seq_len=40, retrieve="never")


def test_window_options_are_checked():
    reader = tiny_reader("bert")
    with pytest.raises(InputError, match="doc_stride"):
        reader.answer(QUESTION, LONG_CONTEXT, doc_stride=-1)
    with pytest.raises(InputError, match="at least 8"):
        reader.answer(QUESTION, LONG_CONTEXT, max_seq_len=4)
    with pytest.raises(InputError, match="128 positions"):
        reader.answer(QUESTION, LONG_CONTEXT, max_seq_len=512)


def test_answer_tokens_label_the_tokens_holding_the_answer():
    offsets = np.array([[-1, -1], [-1, -1], [0, 3], [4, 8], [8, 10], [11, 15], [-1, -1]])
    assert answer_tokens(offsets, 4, 10) == (3, 4)
    assert answer_tokens(offsets, 5, 9) == (3, 4)  # inside tokens: the tokens that contain it
    assert answer_tokens(offsets, 11, 16) == (0, 0)  # runs past the window: CLS
    assert answer_tokens(offsets, 0, 0) == (0, 0)


# ---- a 100,000-token context ---------------------------------------------------------------------------


def long_text(tokenizer, n_tokens: int) -> str:
    sentence = " ".join(CORPUS)
    per = len(tokenizer.encode(sentence, add_special_tokens=False).ids)
    return " ".join([sentence] * (n_tokens // per + 1))


def test_a_100k_token_context_is_read_whole_with_a_real_model():
    reader = tiny_reader("bert")
    context = long_text(reader.tokenizer, 100_000)
    assert len(reader.tokenizer.encode(context, add_special_tokens=False).ids) >= 100_000
    for retrieve in ("never", "auto"):
        pred = reader.answer(QUESTION, context, top_k=3, doc_stride=32, retrieve=retrieve)
        assert pred.answers and np.isfinite(pred.null_score_diff)
        for a in pred.answers:
            assert context[a.start : a.end] == a.text


def test_reading_memory_is_bounded_by_the_batch_not_the_context():
    reader, backend = scripted_reader(tiny_model_dir("bert"))
    zurich = token_id(reader, "zurich")  # the tokenizer lowercases and strips accents
    backend.start[zurich] = backend.end[zurich] = 5.0
    context = long_text(reader.tokenizer, 100_000).replace("Zürich, ", "") + " Zürich, at last."
    windower = Windower(reader.tokenizer, 128, 16)
    tracemalloc.start()
    try:
        n_windows = len(windower([QUESTION], [context]))  # windows are freed again before the read
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        pred = reader.answer_batch(
            [(QUESTION, context)], batch_size=8, max_seq_len=128, doc_stride=16, retrieve="never"
        )[0]
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert pred.answers[0].text == "Zürich" and pred.answers[0].start == context.index("Zürich")
    assert max(backend.batch_rows) <= 8 and sum(backend.batch_rows) == n_windows
    assert backend.max_alive_before == 0, "the reader kept the logits of earlier batches"
    # The windows themselves (ids, types, offsets: 32 bytes a token) are the only cost that grows with the
    # text; scoring every span of every window at once would take 4 bytes x 30 lengths a token.
    windows_bytes = n_windows * 128 * 32
    all_band_bytes = n_windows * 128 * 30 * 4
    assert peak < windows_bytes + all_band_bytes / 4, (peak, windows_bytes, all_band_bytes)


def test_a_model_with_one_token_type_is_fed_zeros(tmp_path):
    """A BERT tokenizer marks the context with type 1; a model with one type would index past its table."""
    from spanqa import Reader
    from tiny_models import build_tiny_model

    reader = Reader.load(build_tiny_model("bert", tmp_path / "one-type", type_vocab_size=1), threads=1)
    assert reader.token_types is False
    pred = reader.answer(QUESTION, LONG_CONTEXT, top_k=2, retrieve="never")
    assert pred.answers and all(LONG_CONTEXT[a.start : a.end] == a.text for a in pred.answers)


def test_tokenizers_releases_that_drop_windows_are_refused():
    """0.23.1 and 0.23.2 cut long contexts short (the first test here fails under them): spanqa says so."""
    for broken in ("0.23.1", "0.23.2"):
        with pytest.raises(DependencyError, match=f"tokenizers {broken} drops"):
            check_tokenizers(broken)
    for fine in ("0.22.2", "0.23.3"):
        check_tokenizers(fine)
    check_tokenizers()  # the installed one: the test suite's own windows come from it
