"""Synthetic unanswerable questions, for teaching a reader when to say "no answer".

SQuAD 2.0's own 43k training negatives are out of reach, so negatives are made from answerable questions:
- other paragraph: the question against another paragraph of the same article (easy: a different topic);
- dropped sentence: the question against its own paragraph with the sentences holding the answer removed
  (hard: same topic, same words, plausible answers of the right type, but the fact is gone);
- perturbed question: the question changed so its paragraph no longer answers it, the way SQuAD 2.0's crowd
  workers did: a negation, an antonym, or a number/name that the paragraph does not contain.
Every kind is checked so that the original answer no longer fits: the answer text must be absent from the new
context, or the changed word absent from the paragraph.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import defaultdict
from collections.abc import Callable

from spanqa.evaluation.squad import Example

SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
NUMBER = re.compile(r"\b\d[\d,]*(?:\.\d+)?\b")
NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")

ANTONYMS = dict(
    pair.split("/")
    for pair in (
        "first/last largest/smallest smallest/largest most/least least/most highest/lowest lowest/highest "
        "biggest/smallest longest/shortest shortest/longest oldest/newest newest/oldest earliest/latest "
        "latest/earliest before/after after/before more/fewer fewer/more increase/decrease "
        "decrease/increase increased/decreased decreased/increased major/minor minor/major best/worst "
        "worst/best north/south south/north east/west west/east northern/southern southern/northern "
        "eastern/western western/eastern upper/lower lower/upper inner/outer outer/inner maximum/minimum "
        "minimum/maximum positive/negative negative/positive legal/illegal illegal/legal private/public "
        "public/private internal/external external/internal success/failure successful/unsuccessful "
        "rich/poor poor/rich strong/weak weak/strong high/low low/high early/late late/early win/lose "
        "won/lost lost/won allowed/banned banned/allowed accepted/rejected rejected/accepted start/end "
        "began/ended ended/began open/closed closed/open large/small small/large older/younger "
        "younger/older higher/lower greater/smaller larger/smaller smaller/larger cheapest/most-expensive "
        "same/different different/same common/rare rare/common modern/ancient ancient/modern"
    ).split()
)
NEGATED = {
    "is": "isn't", "are": "aren't", "was": "wasn't", "were": "weren't", "does": "doesn't", "do": "don't",
    "did": "didn't", "can": "can't", "could": "couldn't", "will": "won't", "would": "wouldn't",
    "should": "shouldn't", "has": "hasn't", "have": "haven't", "had": "hadn't",
}  # fmt: skip
AUXILIARIES = re.compile(r"\b(" + "|".join(NEGATED) + r")\b")


# Each kind takes an example, the paragraphs of its article as (text, lowercased text) pairs (lowercased once
# per article, not once per question), a random generator and how many negatives to make.
Paragraphs = list[tuple[str, str]]


def other_paragraph(ex: Example, paragraphs: Paragraphs, rng: random.Random, k: int) -> list[tuple[str, str]]:
    """The question against up to k other paragraphs of its article that contain none of its answers."""
    texts = _answer_texts(ex)
    others = [p for p in paragraphs if p[0] != ex.context]
    rng.shuffle(others)
    fit = ((ex.question, c) for c, low in others if not any(t in low for t in texts))
    return list(itertools.islice(fit, k))


def dropped_sentence(
    ex: Example, paragraphs: Paragraphs, rng: random.Random, k: int
) -> list[tuple[str, str]]:
    """The paragraph without the sentences that hold any gold answer (one at most)."""
    spans = [(a.start, a.start + len(a.text)) for a in ex.answers if a.text.strip()]
    sentences = _sentences(ex.context)
    kept = [(a, b) for a, b in sentences if not any(a < e and s < b for s, e in spans)]
    if k < 1 or len(kept) < 2 or len(kept) == len(sentences):
        return []
    context = " ".join(ex.context[a:b] for a, b in kept)
    if any(t in context.lower() for t in _answer_texts(ex)):
        return []
    return [(ex.question, context)]


def perturbed_question(
    ex: Example, paragraphs: Paragraphs, rng: random.Random, k: int
) -> list[tuple[str, str]]:
    """Up to k versions of the question, each with one change the paragraph does not support."""
    changes: list[Callable[[str, str, random.Random], str | None]] = [_antonym, _negation, _number, _name]
    rng.shuffle(changes)
    out: list[tuple[str, str]] = []
    for change in changes:
        question = change(ex.question, ex.context, rng)
        if question and question != ex.question and len(out) < k:
            out.append((question, ex.context))
    return out


KINDS = {"other": other_paragraph, "drop": dropped_sentence, "perturb": perturbed_question}


def make_negatives(
    examples: list[Example], kind: str, rate: float, rng: random.Random
) -> list[tuple[str, str]]:
    """About `rate` negatives of one kind per answerable example: (question, context) pairs."""
    make = KINDS[kind]
    lowered: dict[str, dict[str, str]] = defaultdict(dict)  # title -> {paragraph: lowercased}, in order
    for ex in examples:
        if ex.context not in lowered[ex.title]:
            lowered[ex.title][ex.context] = ex.context.lower()
    by_title = {title: list(paragraphs.items()) for title, paragraphs in lowered.items()}
    out = []
    for ex in examples:
        if ex.is_impossible or not ex.answers:
            continue
        k = int(rate) + (1 if rng.random() < rate - int(rate) else 0)
        out += make(ex, by_title[ex.title], rng, k)
    return out


def _answer_texts(ex: Example) -> set[str]:
    return {a.text.strip().lower() for a in ex.answers if a.text.strip()}


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _antonym(question: str, context: str, rng: random.Random) -> str | None:
    words = [m for m in re.finditer(r"\b[a-z]+\b", question) if m.group() in ANTONYMS]
    ctx = context.lower()
    words = [m for m in words if not re.search(rf"\b{re.escape(ANTONYMS[m.group()])}\b", ctx)]
    if not words:
        return None
    m = rng.choice(words)
    return question[: m.start()] + ANTONYMS[m.group()].replace("-", " ") + question[m.end() :]


def _negation(question: str, context: str, rng: random.Random) -> str | None:
    """Negate the first auxiliary verb; the contracted form is grammatical wherever the auxiliary stands."""
    if re.search(r"\b(not|never|n't|no)\b", question.lower()) or re.search(r"\b(not|never|n't)\b", context):
        return None
    m = AUXILIARIES.search(question)
    if not m:
        return None
    return question[: m.start()] + NEGATED[m.group()] + question[m.end() :]


def _number(question: str, context: str, rng: random.Random) -> str | None:
    found = list(NUMBER.finditer(question))
    if not found:
        return None
    m = rng.choice(found)
    digits = m.group().replace(",", "")
    try:
        value = float(digits)
    except ValueError:
        return None
    for _ in range(5):
        new = value + rng.choice([-3, -2, -1, 1, 2, 3]) * (1 if value < 100 or value > 1000 else 10)
        text = str(int(new)) if new == int(new) else f"{new:g}"
        if new > 0 and text not in context:
            return question[: m.start()] + text + question[m.end() :]
    return None


def _name(question: str, context: str, rng: random.Random) -> str | None:
    """Swap a name in the question for another name of the paragraph that the question does not use."""
    in_question = [m for m in NAME.finditer(question) if m.start() > 0 and m.group() in context]
    candidates = sorted({n for n in NAME.findall(context) if n not in question})
    if not in_question or not candidates:
        return None
    m = rng.choice(in_question)
    return question[: m.start()] + rng.choice(candidates) + question[m.end() :]
