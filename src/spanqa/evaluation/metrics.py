"""The official SQuAD 2.0 metric, ported function by function from the official `evaluate-v2.0.py`.

Every function keeps the official script's name and behaviour, quirks included, so that numbers reported by
spanqa equal the ones the official script prints for the same predictions and no-answer probabilities:
- an answer is normalized (lower case, no punctuation, no articles a/an/the, single spaces) before comparing;
- a question's score is the maximum over its gold answers; gold answers that normalize to "" are dropped,
  and a question without gold answers (unanswerable) has the single gold answer "";
- a question "has an answer" when its `answers` list is non-empty;
- `find_best_thresh` walks the questions by increasing no-answer probability and keeps the best cut.
Two additions that the official script does not report: `answerability_auc` and, in evaluation.py, ECE.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (in the official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # either is "no answer": F1 is 1 if both are, else 0
        return float(gold_toks == pred_toks)
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def gold_texts(answers: Sequence[str]) -> list[str]:
    """The gold answers a prediction is compared with: [""] for an unanswerable question."""
    golds = [a for a in answers if normalize_answer(a)]
    return golds or [""]


def get_raw_scores(
    golds: Mapping[str, Sequence[str]], preds: Mapping[str, str]
) -> tuple[dict[str, int], dict[str, float]]:
    """Exact and F1 of every predicted question (max over its gold answers); `golds` maps id -> answers."""
    exact_scores: dict[str, int] = {}
    f1_scores: dict[str, float] = {}
    for qid, answers in golds.items():
        if qid not in preds:  # the official script skips (and prints) missing predictions
            continue
        a_pred = preds[qid]
        texts = gold_texts(answers)
        exact_scores[qid] = max(compute_exact(a, a_pred) for a in texts)
        f1_scores[qid] = max(compute_f1(a, a_pred) for a in texts)
    return exact_scores, f1_scores


def apply_no_ans_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    """Scores after answering "" wherever the no-answer probability is above the threshold."""
    new_scores = {}
    for qid, s in scores.items():
        if na_probs[qid] > na_prob_thresh:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def make_eval_dict(
    exact_scores: Mapping[str, float], f1_scores: Mapping[str, float], qid_list: Sequence[str] | None = None
) -> dict[str, float | int]:
    if not qid_list:
        total = len(exact_scores)
        return {
            "exact": 100.0 * sum(exact_scores.values()) / total,
            "f1": 100.0 * sum(f1_scores.values()) / total,
            "total": total,
        }
    total = len(qid_list)
    return {
        "exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
        "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total,
        "total": total,
    }


def merge_eval(main_eval: dict, new_eval: Mapping, prefix: str) -> None:
    for k in new_eval:
        main_eval[f"{prefix}_{k}"] = new_eval[k]


def best_cut(
    preds: Mapping[str, str],
    scores: Mapping[str, float],
    na_scores: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
) -> tuple[float, str | None]:
    """The official threshold search, returning the question at the best cut instead of its probability.

    Questions are answered in order of increasing `na_scores` (any score where higher means "no answer");
    the result is the best total score in percent and the last question answered at the best cut (None:
    answering nothing is best). Ties in `na_scores` are walked one question at a time, as officially.
    """
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = best_score = float(num_no_ans)
    best_qid = None
    for qid in sorted(na_scores, key=lambda k: na_scores[k]):
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_qid = qid
    return 100.0 * best_score / len(scores), best_qid


def find_best_thresh(
    preds: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
) -> tuple[float, float]:
    """The best score over no-answer thresholds, and that threshold (0.0 when answering nothing is best)."""
    best_score, best_qid = best_cut(preds, scores, na_probs, qid_to_has_ans)
    return best_score, (na_probs[best_qid] if best_qid is not None else 0.0)


def find_all_best_thresh(
    main_eval: dict,
    preds: Mapping[str, str],
    exact_raw: Mapping[str, float],
    f1_raw: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
) -> None:
    best_exact, exact_thresh = find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def squad_v2_eval(
    golds: Mapping[str, Sequence[str]],
    preds: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float | int]:
    """What the official script prints for a dataset (`golds`: id -> gold answer texts, [] if unanswerable),
    predictions (id -> text, "" for no answer) and optional no-answer probabilities."""
    qid_to_has_ans = {qid: bool(answers) for qid, answers in golds.items()}
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    probs = na_probs if na_probs is not None else {k: 0.0 for k in preds}
    exact_raw, f1_raw = get_raw_scores(golds, preds)
    exact_thresh = apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, na_prob_thresh)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if na_probs is not None:
        find_all_best_thresh(out_eval, preds, exact_raw, f1_raw, probs, qid_to_has_ans)
    return out_eval


def answerability_auc(
    scores: Sequence[float] | np.ndarray, has_ans: Sequence[bool] | np.ndarray
) -> float | None:
    """ROC AUC of `scores` (higher = more likely answerable) for telling answerable questions from the
    rest: the chance that a random answerable question outscores a random unanswerable one, ties counting
    half. None when one of the two kinds is missing."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(has_ans, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney: average ranks over ties (-inf scores, questions without any span, tie lowest)
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
