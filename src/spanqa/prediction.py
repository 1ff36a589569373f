"""What a reader returns: answers as exact character spans, and the no-answer decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Citation:
    """Where an answer from a document index is: the indexed document's source (its file), format and page
    (None when the format has no pages), and the stored passage holding the answer, as offsets into the
    document's stored text: `passage_text == text[passage_start:passage_end]`, which contains the answer."""

    source: str
    format: str
    page: int | None
    passage_start: int
    passage_end: int
    passage_text: str

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "format": self.format}
        if self.page is not None:
            d["page"] = self.page
        d.update(
            passage_start=self.passage_start, passage_end=self.passage_end, passage_text=self.passage_text
        )
        return d


@dataclass(frozen=True)
class Answer:
    """A span of the caller's text: `context[start:end] == text`.

    `score` is the probability that this span is the right answer *given that the text answers the
    question* (a calibrated model; else the model's softmax share among spans). Spans overlapping a better
    one are not separate answers: the best answer's score is its own, alternatives share what it leaves,
    so the scores of a prediction never add up past 1.
    `doc` is the index of the context the answer is in, when several were given, or the document id when
    answering from a DocumentIndex; `passage` is then the number of the indexed passage holding the answer,
    and `citation` says where it is (source, page, the passage's text and offsets).
    """

    text: str
    start: int
    end: int
    score: float
    doc: int | str | None = None
    passage: int | None = None
    citation: Citation | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "start": self.start, "end": self.end, "score": self.score}
        if self.doc is not None:
            d["doc"] = self.doc
        if self.passage is not None:
            d["passage"] = self.passage
        if self.citation is not None:
            d.update(self.citation.to_dict())
        return d


@dataclass
class Prediction:
    """The best answers (best first), how likely the text answers the question, and the decision.

    `answerable` is the probability that the text answers the question at all, for the prior
    `answerable_prior` (how often the caller's questions are answered by their texts); `no_answer` is
    `answerable < 0.5`, unless the caller gave a raw `null_threshold`: then `null_score_diff < threshold`.
    `null_score_diff` is the best span's raw score (start + end logit) minus the null score (the same at
    the CLS token, minimum over windows). The answers are filled in either way, so a caller can still look
    at the best guesses of an unanswerable question. `features` holds the raw scores behind the
    probabilities (for evaluation and tuning; not part of `to_dict`).
    """

    answers: list[Answer] = field(default_factory=list)
    no_answer: bool = True
    null_score_diff: float = float("-inf")
    answerable: float = 0.0
    answerable_prior: float | None = None
    features: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    @property
    def best(self) -> Answer | None:
        """The answer, or None when the question has no answer."""
        return None if self.no_answer or not self.answers else self.answers[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "answers": [a.to_dict() for a in self.answers],
            "no_answer": self.no_answer,
            "answerable": self.answerable,
            "answerable_prior": self.answerable_prior,
            "null_score_diff": _finite(self.null_score_diff),
        }


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None
