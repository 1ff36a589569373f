"""The Reader: batches equal single answers, bad input and bad model directories fail with clear errors."""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanqa import InputError, ModelError, Reader
from text_strategies import questions, texts
from tiny_models import CORPUS, tiny_model_dir, tiny_reader

CONTEXT = " ".join(CORPUS)
QUESTION = "When was the lighthouse first lit?"
TOLERANCE = 1e-5


def same_prediction(batched, single, contexts: list[str] | None = None) -> None:
    """Same spans in the same order, scores equal within TOLERANCE.

    Answers whose scores tie within TOLERANCE form an unordered group: batched and single runs round floats
    differently on some CPUs (AVX-512), so either of two tied spans may come first, and the last group may
    keep a different one of them under top_k. With `contexts`, a document is told by its text (identical
    contexts tie on every span).
    """

    def groups(pred) -> list[set]:
        out: list[tuple[float, set]] = []
        for a in pred.answers:
            key = (contexts[a.doc or 0] if contexts is not None else a.doc, a.start, a.end, a.text)
            if out and abs(out[-1][0] - a.score) <= TOLERANCE:
                out[-1][1].add(key)
            else:
                out.append((a.score, {key}))
        return [g for _, g in out]

    got, want = groups(batched), groups(single)
    assert len(got) == len(want) and got[:-1] == want[:-1]
    assert [len(g) for g in got] == [len(g) for g in want]
    assert [a.score for a in batched.answers] == pytest.approx(
        [a.score for a in single.answers], abs=TOLERANCE
    )
    assert batched.no_answer == single.no_answer
    assert batched.null_score_diff == pytest.approx(single.null_score_diff, abs=TOLERANCE)


_item = st.tuples(questions(), st.one_of(texts(), st.lists(texts(1, 12), min_size=1, max_size=3)))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["bert", "roberta", "deberta-v2"]),
    items=st.lists(_item, min_size=1, max_size=4),
    batch_size=st.integers(1, 6),
    top_k=st.integers(1, 4),
    max_seq_len=st.sampled_from([40, 64, 128]),
    doc_stride=st.integers(0, 24),
)
def test_answer_batch_equals_answer_one_by_one(kind, items, batch_size, top_k, max_seq_len, doc_stride):
    reader = tiny_reader(kind)
    options = dict(top_k=top_k, max_seq_len=max_seq_len, doc_stride=doc_stride)
    singles = []
    for question, context in items:
        try:
            if isinstance(context, str):
                singles.append(reader.answer(question, context, **options))
            else:
                singles.append(reader.answer(question, contexts=context, **options))
        except InputError as e:
            assert "question is" in str(e)  # too long for the window: the batch must refuse it too
            with pytest.raises(InputError, match="question is"):
                reader.answer_batch(items, batch_size=batch_size, **options)
            return
    batched = reader.answer_batch(items, batch_size=batch_size, **options)
    assert len(batched) == len(items)
    for b, s, (_, context) in zip(batched, singles, items):
        same_prediction(b, s, [context] if isinstance(context, str) else context)


def test_answer_batch_keeps_input_order_whatever_the_lengths():
    reader = tiny_reader("bert")
    items = [(QUESTION, CONTEXT * n) for n in (3, 1, 2)] + [("Who?", "Margaret Hale built it.")]
    batched = reader.answer_batch(items, batch_size=2, top_k=2, retrieve="never")
    for (question, context), b in zip(items, batched):
        same_prediction(b, reader.answer(question, context, top_k=2, retrieve="never"))


def test_readers_shared_by_threads_with_different_window_lengths_agree_with_one_thread():
    reader = tiny_reader("bert")
    jobs = [(QUESTION, CONTEXT, length, stride) for length in (32, 48, 128) for stride in (0, 8, 16)]
    expected = [reader.answer(q, c, max_seq_len=n, doc_stride=s, top_k=3) for q, c, n, s in jobs]
    results: dict[int, list] = {}

    def work(t: int) -> None:
        results[t] = [reader.answer(q, c, max_seq_len=n, doc_stride=s, top_k=3) for q, c, n, s in jobs]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in range(4):
        for got, want in zip(results[t], expected):
            same_prediction(got, want)


# ---- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "context", "message"),
    [
        ("", CONTEXT, "question is empty"),
        (" \t\n\u00a0\u3000", CONTEXT, "question is empty"),
        (QUESTION, "", "context is empty"),
        (QUESTION, "\r\n \u2028 ", "context is empty"),
        ("What\x00?", CONTEXT, "question contains NUL"),
        (QUESTION, "binary\x00data", "context contains NUL"),
        (QUESTION, b"bytes", "context must be a string, not bytes"),
        (None, CONTEXT, "question must be a string, not NoneType"),
        (QUESTION, "lone \ud800 surrogate", "context is not valid Unicode"),
        ("lone \udfff?", CONTEXT, "question is not valid Unicode"),
    ],
)
def test_bad_text_is_an_input_error_naming_the_field(question, context, message):
    with pytest.raises(InputError, match=message):
        tiny_reader("bert").answer(question, context)


def test_bad_options_and_item_shapes_are_input_errors():
    reader = tiny_reader("bert")
    with pytest.raises(InputError, match="exactly one of context or contexts"):
        reader.answer(QUESTION)
    with pytest.raises(InputError, match="exactly one of context or contexts"):
        reader.answer(QUESTION, CONTEXT, contexts=[CONTEXT])
    with pytest.raises(InputError, match="non-empty list"):
        reader.answer(QUESTION, contexts=[])
    with pytest.raises(InputError, match=r"contexts\[1\] is empty"):
        reader.answer(QUESTION, contexts=[CONTEXT, "  "])
    with pytest.raises(InputError, match="item 1: expected a"):
        reader.answer_batch([(QUESTION, CONTEXT), (QUESTION,)])
    for name in ("top_k", "max_answer_len", "batch_size"):
        for bad in (0, -1, 1.5, True):
            with pytest.raises(InputError, match=name):
                reader.answer_batch([(QUESTION, CONTEXT)], **{name: bad})


def test_an_empty_batch_gives_no_predictions():
    assert tiny_reader("bert").answer_batch([]) == []


def test_text_the_tokenizer_deletes_entirely_gives_no_answer():
    pred = tiny_reader("bert").answer(QUESTION, "\u200b\u200b\ufeff")  # zero-width: no tokens at all
    assert pred.answers == [] and pred.no_answer is True
    assert json.dumps(pred.to_dict(), allow_nan=False)  # -inf null_score_diff is still valid JSON


# ---- bad model directories ---------------------------------------------------------------------------------


def copy_model(tmp_path: Path, *keep: str) -> Path:
    out = tmp_path / "model"
    out.mkdir()
    for name in keep:
        shutil.copy(tiny_model_dir("bert") / name, out / name)
    return out


def write_vocab(out: Path) -> None:
    vocab = tiny_reader("bert").tokenizer.get_vocab()
    (out / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n", encoding="utf-8")


def test_missing_or_wrong_model_paths_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="model directory not found"):
        Reader.load(tmp_path / "nowhere")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        Reader.load(tmp_path / "file.bin")
    with pytest.raises(ModelError, match=r"no config\.json"):
        Reader.load(tmp_path)


def test_a_hub_id_offline_is_a_model_error_that_says_so(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match=r"could not be downloaded.*offline") as err:
        Reader.load("nobody-spanqa-test/no-such-model")
    assert "\n" not in str(err.value)


def test_a_directory_with_only_a_wordpiece_vocab_gets_a_fast_tokenizer_built(tmp_path):
    """transformers builds a fast BertTokenizer from vocab.txt: that gives offsets, so it is accepted."""
    out = copy_model(tmp_path, "config.json", "model.safetensors")
    write_vocab(out)
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    pred = Reader.load(out, threads=1).answer(QUESTION, CONTEXT)
    assert CONTEXT[pred.answers[0].start : pred.answers[0].end] == pred.answers[0].text


def test_a_slow_tokenizer_is_refused_with_a_clear_model_error(tmp_path):
    """BertJapaneseTokenizer is pure Python (no offsets); transformers cannot make it fast."""
    out = copy_model(tmp_path, "config.json", "model.safetensors")
    write_vocab(out)
    config = {"tokenizer_class": "BertJapaneseTokenizer", "word_tokenizer_type": "basic"}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"slow .*tokenizer.*fast tokenizer") as err:
        Reader.load(out)
    assert "\n" not in str(err.value)


def test_a_directory_without_any_tokenizer_is_a_one_line_model_error(tmp_path):
    out = copy_model(tmp_path, "config.json", "model.safetensors")
    with pytest.raises(ModelError, match="no tokenizer in") as err:
        Reader.load(out)  # transformers would make an empty BertTokenizer from config.json alone
    assert "\n" not in str(err.value)
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "NoSuchTokenizer"}))
    with pytest.raises(ModelError, match="no fast tokenizer") as err:
        Reader.load(out)  # transformers' own message runs over several lines
    assert "\n" not in str(err.value)


def test_broken_model_files_are_model_errors(tmp_path):
    out = copy_model(tmp_path, "config.json", "tokenizer.json")
    with pytest.raises(ModelError, match="cannot load a question-answering model") as err:
        Reader.load(out)  # no weights
    assert "\n" not in str(err.value)
    (out / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot be read as a fast tokenizer"):
        Reader.load(out)
    (out / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        Reader.load(out)


def test_remote_code_is_never_run(tmp_path):
    out = copy_model(tmp_path, "tokenizer.json", "model.safetensors")
    marker = tmp_path / "ran"
    (out / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = {"model_type": "spanqa-evil", "auto_map": {"AutoModelForQuestionAnswering": "evil.EvilModel"}}
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError) as err:
        Reader.load(out)
    assert "\n" not in str(err.value)
    assert not marker.exists()


# ---- the two probabilities and the decision ---------------------------------------------------------------


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_answerable_moves_with_the_prior_by_bayes_rule_and_scores_do_not():
    reader = tiny_reader("bert")
    base = reader.answer(QUESTION, CONTEXT, top_k=3)
    assert base.answerable_prior == reader.answerable_prior
    for prior in (0.02, 0.3, 0.5, 0.8, 0.98):
        pred = reader.answer(QUESTION, CONTEXT, top_k=3, answerable_prior=prior)
        shift = _logit(prior) - _logit(base.answerable_prior)
        assert _logit(pred.answerable) == pytest.approx(_logit(base.answerable) + shift, abs=1e-6)
        assert pred.answerable_prior == prior and pred.no_answer == (pred.answerable < 0.5)
        assert pred.answers == base.answers  # a span's score is given that the text answers: no prior in it
    low = reader.answer(QUESTION, CONTEXT, answerable_prior=0.001)
    high = reader.answer(QUESTION, CONTEXT, answerable_prior=0.999)
    assert low.no_answer and not high.no_answer


def test_a_raw_threshold_still_decides_and_is_not_mixed_with_a_prior():
    reader = tiny_reader("bert")
    diff = reader.answer(QUESTION, CONTEXT).null_score_diff
    for threshold in (-math.inf, diff - 1.0, diff + 1.0, math.inf):
        assert reader.answer(QUESTION, CONTEXT, null_threshold=threshold).no_answer == (diff < threshold)
    with pytest.raises(InputError, match="not both"):
        reader.answer(QUESTION, CONTEXT, null_threshold=0.0, answerable_prior=0.5)
    for bad in (0, 1, 0.0, 1.0, -0.1, 1.5, math.nan, math.inf, "0.5", True):
        with pytest.raises(InputError, match="answerable_prior"):
            reader.answer(QUESTION, CONTEXT, answerable_prior=bad)
    for bad in (math.nan, "x", True):
        with pytest.raises(InputError, match="null_threshold"):
            reader.answer(QUESTION, CONTEXT, null_threshold=bad)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(context=texts(), top_k=st.integers(1, 8))
def test_alternatives_are_disjoint_spans_whose_scores_never_add_past_one(context, top_k):
    pred = tiny_reader("bert").answer(QUESTION, context, top_k=top_k, max_seq_len=64, doc_stride=16)
    scores = [a.score for a in pred.answers]
    assert sum(scores) <= 1.0 + 1e-9 and scores == sorted(scores, reverse=True)
    for i, a in enumerate(pred.answers):
        for b in pred.answers[:i]:
            assert a.end <= b.start or b.end <= a.start, (a, b)  # overlapping spans are one answer


def test_a_calibrated_card_gives_both_probabilities(tmp_path: Path):
    from spanqa.reading.calibration import sigmoid

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("bert"), model)
    card = {
        "null_threshold": 1.5,
        "calibration": {"method": "platt", "features": ["span_logit"], "coef": [0.8], "intercept": -0.2},
        "answerable_calibration": {
            "method": "platt",
            "features": ["null_score_diff", "span_mass_diff"],
            "coef": [0.5, 0.1],
            "intercept": -0.3,
            "tuning_prior": 0.4,
        },
        "answerable_prior": 0.9,
    }
    (model / "spanqa.json").write_text(json.dumps(card), encoding="utf-8")
    reader = Reader.load(model)
    assert reader.calibration.calibrated and reader.answerable_prior == 0.9
    pred = reader.answer(QUESTION, CONTEXT, top_k=2)
    f = pred.features
    assert pred.answers[0].score == pytest.approx(sigmoid(0.8 * f["span_logit"] - 0.2))
    z = 0.5 * f["null_score_diff"] + 0.1 * f["span_mass_diff"] - 0.3 + _logit(0.9) - _logit(0.4)
    assert pred.answerable == pytest.approx(sigmoid(z)) and pred.answerable_prior == 0.9
    assert pred.no_answer == (pred.answerable < 0.5)
    # a card from before the split (one calibration of unconditional correctness) still loads
    card = {
        "null_threshold": 1.5,
        "calibration": {
            **card["calibration"],
            "features": ["null_score_diff", "log_share"],
            "coef": [0.2, 0.5],
        },
    }
    (model / "spanqa.json").write_text(json.dumps(card), encoding="utf-8")
    old = Reader.load(model).answer(QUESTION, CONTEXT)
    assert 0.0 < old.answers[0].score < 1.0
    assert old.answerable == pytest.approx(sigmoid(old.null_score_diff - 1.5))
    assert old.no_answer == (old.null_score_diff < 1.5)
