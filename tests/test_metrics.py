"""The SQuAD 2.0 metric against the official formulas, worked out by hand on crafted cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa.evaluation.metrics import (
    answerability_auc,
    best_cut,
    compute_exact,
    compute_f1,
    find_best_thresh,
    get_raw_scores,
    gold_texts,
    normalize_answer,
    squad_v2_eval,
)
from spanqa.reading.calibration import expected_calibration_error, reliability_bins

# the official script's keys, in its order, when the data has both kinds of question and na_probs
OFFICIAL_KEYS = [
    "exact",
    "f1",
    "total",
    "HasAns_exact",
    "HasAns_f1",
    "HasAns_total",
    "NoAns_exact",
    "NoAns_f1",
    "NoAns_total",
    "best_exact",
    "best_exact_thresh",
    "best_f1",
    "best_f1_thresh",
]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Cat", "cat"),
        ("an apple a day", "apple day"),
        ("theatre, anathema", "theatre anathema"),  # articles only as whole words
        ("  A\tlot\n of   space ", "lot of space"),
        ("U.S.A.", "usa"),
        ("rock-n-roll!", "rocknroll"),
        ("the", ""),
        ("'the' (a)", ""),
        ("“curly” quotes", "“curly” quotes"),  # only ASCII punctuation is removed, as officially
        ("ÉCOLE", "école"),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_and_f1_by_hand():
    assert compute_exact("The Eiffel Tower", "eiffel tower.") == 1
    assert compute_exact("Eiffel Tower", "Eiffel") == 0
    # gold [cat, sat], pred [cat]: precision 1, recall 1/2
    assert compute_f1("the cat sat", "a cat") == pytest.approx(2 / 3)
    # repeated tokens count as a multiset: gold [y, y, z], pred [y, y] share two: precision 1, recall 2/3
    assert compute_f1("y y z", "y y") == pytest.approx(0.8)
    assert compute_f1("x", "y") == 0.0


def test_empty_answers_match_only_empty():
    assert compute_f1("", "") == 1.0
    assert compute_exact("", "") == 1
    assert compute_f1("", "something") == 0.0
    assert compute_f1("something", "") == 0.0
    # a prediction that normalizes to nothing counts as "no answer"
    assert compute_exact("", "The.") == 1
    assert compute_f1("", "a") == 1.0


def test_gold_texts_drop_empty_golds():
    assert gold_texts([]) == [""]
    assert gold_texts(["", " the ", "."]) == [""]
    assert gold_texts(["the Rhine", ""]) == ["the Rhine"]


def test_max_over_gold_answers():
    golds = {"q": ["Denver Broncos", "The Broncos", "Broncos"]}
    exact, f1 = get_raw_scores(golds, {"q": "broncos"})
    assert exact == {"q": 1}
    exact, f1 = get_raw_scores(golds, {"q": "the Denver team"})
    assert exact == {"q": 0}
    # best gold: "Denver Broncos" = [denver, broncos] vs [denver, team] -> 1/2, 1/2
    assert f1["q"] == pytest.approx(0.5)


GOLDS = {
    "a1": ["Paris"],
    "a2": ["the blue whale", "blue whale"],
    "a3": ["1846"],
    "n1": [],
    "n2": [],
}
PREDS = {"a1": "Paris", "a2": "a whale", "a3": "", "n1": "", "n2": "London"}
NA = {"a1": 0.1, "a2": 0.4, "a3": 0.9, "n1": 0.8, "n2": 0.3}


def test_squad_v2_eval_by_hand():
    m = squad_v2_eval(GOLDS, PREDS, NA)
    # exact: a1 1, a2 0, a3 0, n1 1, n2 0 -> 2/5; f1: a2 [whale] vs [blue, whale] -> 2/3
    assert m["exact"] == pytest.approx(40.0)
    assert m["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 1 + 0) / 5)
    assert m["total"] == 5
    assert (m["HasAns_total"], m["NoAns_total"]) == (3, 2)
    assert m["HasAns_exact"] == pytest.approx(100 / 3)
    assert m["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert m["NoAns_exact"] == m["NoAns_f1"] == pytest.approx(50.0)
    # threshold search by increasing na_prob: start at 2 (unanswerable ones right by answering nothing),
    # a1 +1 -> 3, n2 -1 -> 2, a2 +2/3 (f1) or 0 (exact), n1 0, a3 0: best is 3 right after a1
    assert m["best_exact"] == pytest.approx(60.0)
    assert m["best_exact_thresh"] == pytest.approx(0.1)
    assert m["best_f1"] == pytest.approx(60.0)
    assert m["best_f1_thresh"] == pytest.approx(0.1)
    assert list(m) == OFFICIAL_KEYS


def test_na_prob_threshold_blanks_answers():
    # with na_prob_thresh 0.35, a2 (0.4), a3 and n1 become "no answer": a2 loses its 2/3, n1 stays right
    m = squad_v2_eval(GOLDS, PREDS, NA, na_prob_thresh=0.35)
    assert m["f1"] == pytest.approx(100 * (1 + 0 + 0 + 1 + 0) / 5)


def test_without_na_probs_and_without_unanswerable():
    m = squad_v2_eval({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "z"})
    assert m == {
        "exact": 50.0,
        "f1": 50.0,
        "total": 2,
        "HasAns_exact": 50.0,
        "HasAns_f1": 50.0,
        "HasAns_total": 2,
    }


def test_best_thresh_when_answering_nothing_is_best():
    golds = {"n1": [], "n2": [], "a1": ["x"]}
    preds = {"n1": "y", "n2": "y", "a1": "wrong"}
    score, thresh = find_best_thresh(
        preds,
        {"n1": 0, "n2": 0, "a1": 0},
        {"n1": 0.2, "n2": 0.3, "a1": 0.9},
        {k: bool(v) for k, v in golds.items()},
    )
    assert (score, thresh) == (pytest.approx(200 / 3), 0.0)


def test_best_thresh_keeps_the_first_of_equal_cuts_and_walks_ties_one_by_one():
    has = {"a1": True, "n1": False, "a2": True, "a3": True}
    preds = {"a1": "x", "n1": "", "a2": "x", "a3": "x"}
    # start at 1 (n1 right by answering nothing); a1 (+1) makes 2 at 0.1; n1 (answered "", +0), a2 and a3
    # (+0 each) only equal it: the threshold stays 0.1
    na = {"a1": 0.1, "n1": 0.2, "a2": 0.3, "a3": 0.9}
    scores = {"a1": 1.0, "n1": 0.0, "a2": 0.0, "a3": 0.0}
    assert find_best_thresh(preds, scores, na, has) == (pytest.approx(50.0), 0.1)
    # a2 and a3 tied at 0.3 are still walked one at a time: a3 (+1) lifts the best to 3, at 0.3
    na = {"a1": 0.1, "n1": 0.2, "a2": 0.3, "a3": 0.3}
    scores["a3"] = 1.0
    assert find_best_thresh(preds, scores, na, has) == (pytest.approx(75.0), 0.3)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(0, 1), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.randoms(use_true_random=False),
)
def test_best_cut_is_the_best_prefix(rows, rnd):
    """With distinct no-answer scores, the official search finds the best "answer the k most answerable"."""
    ids = [f"q{i}" for i in range(len(rows))]
    has = {q: r[0] for q, r in zip(ids, rows)}
    scores = {q: (r[1] if r[0] else 0.0) for q, r in zip(ids, rows)}
    preds = {q: ("x" if r[2] else "") for q, r in zip(ids, rows)}
    na = dict(zip(ids, rnd.sample(range(1000), len(ids))))
    order = sorted(ids, key=na.get)

    def total(k: int) -> float:
        answered = set(order[:k])
        return sum(
            (scores[q] if has[q] else float(not preds[q])) if q in answered else float(not has[q])
            for q in ids
        )

    best, qid = best_cut(preds, scores, na, has)
    expected = max(total(k) for k in range(len(ids) + 1))
    assert best == pytest.approx(100 * expected / len(ids))
    k = 0 if qid is None else order.index(qid) + 1
    assert total(k) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1.0, 0.0, 0.5, 2.0, -math.inf]), st.booleans()), max_size=25))
def test_auc_is_the_pairwise_win_rate(rows):
    scores = [r[0] for r in rows]
    has = [r[1] for r in rows]
    pos = [s for s, h in rows if h]
    neg = [s for s, h in rows if not h]
    auc = answerability_auc(scores, has)
    if not pos or not neg:
        assert auc is None
        return
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert auc == pytest.approx(wins / (len(pos) * len(neg)))


def test_ece_and_reliability_bins_by_hand():
    prob = np.array([0.05, 0.15, 0.95, 0.95])
    correct = np.array([0, 1, 1, 0])
    # bins 0, 1, 9: |0 - .05| * 1/4 + |1 - .15| * 1/4 + |.5 - .95| * 2/4
    assert expected_calibration_error(prob, correct) == pytest.approx((0.05 + 0.85 + 0.9) / 4)
    b = reliability_bins(prob, correct)
    assert b["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert b["accuracy"][9] == pytest.approx(0.5)


def test_f1_curves_equal_the_official_metric_at_each_decision():
    from spanqa.evaluation.evaluate import QuestionResult, decided, f1_by_prior, f1_by_threshold
    from spanqa.reading.calibration import Calibration, Platt

    diffs = [3.0, 1.0, 1.0, -2.0, -math.inf, 0.5]
    golds = [["a b"], [], ["c"], ["d"], [], []]
    texts = ["a", "x", "c", "e", "", "y"]
    results = [
        QuestionResult(f"q{i}", g, t, {"null_score_diff": d})
        for i, (d, g, t) in enumerate(zip(diffs, golds, texts))
    ]
    golds_by_id = {r.id: r.answers for r in results}
    for t, f1 in f1_by_threshold(results, (4.0, 1.0, 0.0, -5.0)).items():
        answers = {r.id: r.text if d >= float(t) else "" for r, d in zip(results, diffs)}
        assert f1 == pytest.approx(squad_v2_eval(golds_by_id, answers)["f1"])
    calibration = Calibration(answerable=Platt(("null_score_diff",), (0.7,), -0.2), tuning_prior=0.4)
    for prior, f1 in f1_by_prior(results, calibration, (0.1, 0.4, 0.9)).items():
        chosen = decided(results, calibration, prior=float(prior))
        for r in chosen:  # Bayes: the decision is a raw threshold that moves with the prior's log-odds
            z = 0.7 * r.features["null_score_diff"] - 0.2 + math.log(float(prior) / (1 - float(prior)))
            assert r.no_answer == (not math.isfinite(z) or z - math.log(0.4 / 0.6) < 0)
        answers = {r.id: r.predicted for r in chosen}
        assert f1 == pytest.approx(squad_v2_eval(golds_by_id, answers)["f1"])


def test_platt_fits_recover_a_logistic_and_weights_count_as_repeats():
    from spanqa.reading.calibration import fit_platt

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 1))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5)))).astype(float)
    platt = fit_platt(x, y, ("f",))
    assert platt.coef[0] == pytest.approx(1.5, abs=0.15) and platt.intercept == pytest.approx(-0.5, abs=0.15)
    doubled = fit_platt(np.vstack([x, x[:100]]), np.r_[y, y[:100]], ("f",))
    weighted = fit_platt(x, y, ("f",), weights=np.r_[np.full(100, 2.0), np.ones(3900)])
    assert weighted.coef[0] == pytest.approx(doubled.coef[0]) and weighted.intercept == pytest.approx(
        doubled.intercept
    )
    assert fit_platt(x, np.ones(4000), ("f",)).coef == (0.0,)  # all one kind: a constant, no infinite slope


def _span_results(
    rng, n: int, slope_by_length: float, prefix: str, lengths: tuple[int, int] = (3, 20)
) -> list:
    """Answerable results whose top span is right with P = sigmoid(span_logit + slope * (log words - 2))."""
    from spanqa.evaluation.evaluate import QuestionResult

    out = []
    for i in range(n):
        logit, words = rng.normal(0, 1.5), int(rng.integers(*lengths))
        z = logit + slope_by_length * (math.log(words) - 2.0)
        right = rng.random() < 1 / (1 + math.exp(-z))
        features = {"span_logit": logit, "null_score_diff": 1.0, "question_log_words": math.log(words)}
        out.append(QuestionResult(f"{prefix}{i}", ["gold"], "gold" if right else "other", features))
    return out


def test_span_calibration_takes_question_length_only_where_it_calibrates_every_set_better():
    from spanqa.evaluation.tuning import fit_span_calibration

    rng = np.random.default_rng(0)
    # accuracy depends on question length and the sets' questions differ in length (SQuAD's longer than
    # TyDi's): without the feature one curve is wrong for both sets, with it each is calibrated
    long, short = _span_results(rng, 1500, 2.0, "a", (10, 25)), _span_results(rng, 1500, 2.0, "b", (3, 7))
    platt, scores = fit_span_calibration(long, [short])
    assert platt.features == ("span_logit", "null_score_diff", "question_log_words")
    assert platt.coef[2] == pytest.approx(2.0, abs=0.4)
    assert scores["span_logit+null_score_diff+question_log_words"] < scores["span_logit+null_score_diff"]
    # it does not: the simpler set is kept
    long, short = _span_results(rng, 1500, 0.0, "c", (10, 25)), _span_results(rng, 1500, 0.0, "d", (3, 7))
    platt, _ = fit_span_calibration(long, [short])
    assert platt.features == ("span_logit", "null_score_diff")
    # results from before the feature existed (an older journal) fall back to the simpler set
    old = _span_results(rng, 300, 2.0, "e")
    for r in old:
        del r.features["question_log_words"]
    assert fit_span_calibration(old)[0].features == ("span_logit", "null_score_diff")
