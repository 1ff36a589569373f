"""The shipped model on real text: right answers at exact offsets, calibrated scores, a real no-answer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from spanqa import Reader
from spanqa.backends.model_dir import read_card

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "samples" / "lighthouse.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def reader(default_model_dir: Path) -> Reader:
    return Reader.load()  # no model named: the shipped one


def test_the_card_holds_both_calibrations_a_prior_and_measured_metrics(default_model_dir: Path):
    card = read_card(default_model_dir)
    assert math.isfinite(card["null_threshold"])
    assert card["calibration"]["method"] == "platt"
    assert card["answerable_calibration"]["method"] == "platt"
    assert 0 < card["answerable_calibration"]["tuning_prior"] < 1 and 0 < card["answerable_prior"] < 1
    assert "dev-half" not in card["tuning"]["data"]
    assert card["metrics"]["squad-v2.0-dev-half.json"]["total"] == 6078
    weights = default_model_dir / "model.safetensors"
    assert weights.stat().st_size <= 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When was the lighthouse first lit?", "12 March 1849"),
        ("Who was the engineer?", "Margaret Hale"),
        ("Who was the last keeper?", "Thomas Brennan"),
        ("How tall is the tower?", "38 metres"),
        ("What did the lamp burn?", "whale oil"),
    ],
)
def test_answers_real_questions_at_exact_offsets(reader: Reader, question: str, expected: str):
    pred = reader.answer(question, TEXT, top_k=3)
    best = pred.answers[0]
    assert best.text == expected
    assert TEXT[best.start : best.end] == expected
    assert 0.0 < best.score <= 1.0
    assert all(a.score <= best.score for a in pred.answers)


def test_questions_the_text_does_not_answer_score_below_those_it_does(reader: Reader):
    answerable = ["When was the lighthouse first lit?", "Who was the last keeper?", "What did the lamp burn?"]
    unanswerable = ["What is the capital of Australia?", "When was the lighthouse demolished?"]
    yes = [reader.answer(q, TEXT) for q in answerable]
    no = [reader.answer(q, TEXT) for q in unanswerable]
    assert all(p.no_answer for p in no)
    assert not any(p.no_answer for p in yes)
    assert min(p.null_score_diff for p in yes) > max(p.null_score_diff for p in no)
    assert max(p.answerable for p in no) < 0.5 <= min(p.answerable for p in yes)


def test_the_same_answer_is_found_in_a_long_document(reader: Reader):
    filler = "\n\n".join(f"Paragraph {i} is about the weather of a quiet coastal town." for i in range(400))
    long_text = filler + "\n\n" + TEXT + "\n\n" + filler
    for retrieve in ("auto", "never"):
        best = reader.answer("When was the lighthouse first lit?", long_text, retrieve=retrieve).answers[0]
        assert best.text == "12 March 1849" and long_text[best.start : best.end] == best.text
