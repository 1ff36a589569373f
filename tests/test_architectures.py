"""Six architectures, each with its own kind of tokenizer: the reader feeds each what it expects."""

from __future__ import annotations

import numpy as np
import pytest

from spanqa.reading.windows import Windower, pad_batch
from tiny_models import CORPUS, KINDS, tiny_model_dir, tiny_reader

QUESTION = "When was the lighthouse first lit?"
SHORT = "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."
LONG = " ".join(CORPUS * 3)


@pytest.mark.parametrize("kind", KINDS)
def test_the_reader_answers_with_exact_offsets(kind):
    reader = tiny_reader(kind)
    assert reader.max_positions == 128
    for context in (SHORT, LONG):
        pred = reader.answer(QUESTION, context, top_k=3, max_seq_len=64, doc_stride=16, retrieve="never")
        # best first and disjoint (spans overlapping a better one are not separate answers): top_k=3 is the
        # first 3 of a wider list; fewer only where the text has fewer disjoint candidates (not the long one)
        wide = reader.answer(QUESTION, context, top_k=20, max_seq_len=64, doc_stride=16, retrieve="never")
        assert [(a.start, a.end) for a in pred.answers] == [(a.start, a.end) for a in wide.answers[:3]]
        if context == LONG:
            assert len(pred.answers) == 3
        for i, a in enumerate(pred.answers):
            assert all(a.end <= b.start or b.end <= a.start for b in pred.answers[:i])
        assert [a.score for a in pred.answers] == sorted((a.score for a in pred.answers), reverse=True)
        for a in pred.answers:
            assert context[a.start : a.end] == a.text and a.text == a.text.strip()
    batched = reader.answer_batch([(QUESTION, LONG), (QUESTION, SHORT)], batch_size=3, max_seq_len=64)
    single = reader.answer(QUESTION, SHORT, max_seq_len=64)
    assert batched[1].answers[0].start == single.answers[0].start
    assert batched[1].answers[0].end == single.answers[0].end
    assert batched[1].null_score_diff == pytest.approx(single.null_score_diff, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_the_reader_feeds_the_model_what_transformers_would(kind):
    """Same ids and the same logits as transformers' own tokenizer and model, padded or not."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    reader = tiny_reader(kind)
    hf_tok = AutoTokenizer.from_pretrained(str(tiny_model_dir(kind)))
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_model_dir(kind))).eval()
    windows = Windower(reader.tokenizer, 128, 16)([QUESTION, "Who?"], [SHORT, SHORT])
    encoded = hf_tok(QUESTION, SHORT, return_tensors="pt")
    assert windows.ids[0].tolist() == encoded["input_ids"][0].tolist()
    with torch.inference_mode():
        expected = model(**encoded).start_logits[0].numpy()
    batch = pad_batch(windows, [0, 1], reader.pad_id, reader.token_types)
    start, _ = reader.backend.run({k: batch[k] for k in reader.backend.input_names})
    np.testing.assert_allclose(start[0], expected, atol=1e-5)
    short = pad_batch(windows, [1], reader.pad_id, reader.token_types)  # the shorter window alone, padded
    alone, _ = reader.backend.run({k: short[k] for k in reader.backend.input_names})
    np.testing.assert_allclose(start[1, : alone.shape[1]], alone[0], atol=1e-5)
