"""Retrieve, then read: a long context is narrowed to its best BM25 passages before the model reads it.

The reader reads the chosen stretches of text as if they were the caller's contexts; `ReadPlan.restore`
then moves each answer back into the caller's text (offsets shifted, `doc` set back), so callers never see
the passages. Regions of one context never overlap, so no span can be found twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from spanqa.errors import InputError, check_positive
from spanqa.prediction import Prediction
from spanqa.retrieval.bm25 import rank_passages
from spanqa.retrieval.passages import DEFAULT_PASSAGE_CHARS, Passage, split_passages

MODES = ("auto", "always", "never")
# Beyond this many characters per window of budget a text cannot fit: natural text averages 4-5 characters
# per token. Saves tokenizing a huge text just to learn that it is too long.
_MAX_CHARS_PER_TOKEN = 8


class WindowShape(Protocol):
    """How the reader cuts windows (its Windower): all the plan needs to count how many a text takes."""

    max_seq_len: int
    n_special: int
    max_question_tokens: int
    doc_stride: int

    def __call__(self, questions: list[str], contexts: list[str]) -> Any: ...


@dataclass(frozen=True)
class Retrieval:
    """When and how to read only the best passages of a context.

    mode: "auto" retrieves from contexts longer than `max_windows` model windows, "always" from every
    context, "never" from none. `passages`: how many passages (of at most `passage_chars` characters)
    are read from each context retrieved from.
    """

    mode: str = "auto"
    max_windows: int = 8
    passages: int = 4
    passage_chars: int = DEFAULT_PASSAGE_CHARS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"retrieve must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("max_windows", "passages", "passage_chars"):
            check_positive(name, getattr(self, name))


def as_retrieval(value: str | Retrieval | None) -> Retrieval:
    if value is None:
        return Retrieval()
    if isinstance(value, Retrieval):
        return value
    if isinstance(value, str):
        return Retrieval(value)
    raise InputError(f"retrieve must be 'auto', 'always', 'never' or a Retrieval, not {type(value).__name__}")


def select_regions(question: str, text: str, passages: list[Passage], k: int) -> list[tuple[int, int]]:
    """Character spans of `text` to read: the k best passages, neighbours joined, in text order.

    When no passage shares a word with the question, the first k passages are read.
    """
    chosen = rank_passages(question, [p.text for p in passages], k) or list(range(min(k, len(passages))))
    regions: list[tuple[int, int]] = []
    last = -2
    for i in sorted(chosen):
        if i == last + 1:  # touching passages are read as one text, so an answer may cross the seam
            regions[-1] = (regions[-1][0], passages[i].end)
        else:
            regions.append((passages[i].start, passages[i].end))
        last = i
    return regions


@dataclass
class ReadPlan:
    """The items to give the reader, and how to map its answers back to the caller's items."""

    items: list[Any]
    # per item: None when read as given, else for each context read: (the caller's doc index, char offset)
    maps: list[list[tuple[int, int]] | None]
    multi: list[bool]

    def restore(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        return [self._restore(p, m, multi) for p, m, multi in zip(predictions, self.maps, self.multi)]

    @staticmethod
    def _restore(pred: Prediction, regions: list[tuple[int, int]] | None, multi: bool) -> Prediction:
        if regions is None:
            return pred
        answers = []
        for a in pred.answers:
            doc, base = regions[a.doc]
            answers.append(
                dataclasses.replace(a, start=a.start + base, end=a.end + base, doc=doc if multi else None)
            )
        return dataclasses.replace(pred, answers=answers)


def plan_reads(items: list[Any], windower: WindowShape, retrieval: Retrieval) -> ReadPlan:
    """Which text of each (question, context | contexts) item the reader should read.

    The items must be valid (the reader checks them first: Reader._check_items).
    """
    plan = ReadPlan([], [], [])
    for item in items:
        regions = None if retrieval.mode == "never" else _plan_item(item, windower, retrieval)
        if regions is None:
            plan.items.append(item)
            plan.maps.append(None)
            plan.multi.append(False)
            continue
        question, context = item
        docs = [context] if isinstance(context, str) else list(context)
        plan.items.append((question, [docs[d][a:b] for d, (a, b) in regions]))
        plan.maps.append([(d, a) for d, (a, _) in regions])
        plan.multi.append(not isinstance(context, str))
    return plan


def _plan_item(
    item: Any, windower: WindowShape, retrieval: Retrieval
) -> list[tuple[int, tuple[int, int]]] | None:
    """(doc, region) pairs to read, or None to read the item as given."""
    question, context = item
    docs = [context] if isinstance(context, str) else context
    regions: list[tuple[int, tuple[int, int]]] = []
    narrowed = False
    for d, text in enumerate(docs):
        if retrieval.mode == "auto" and _fits(question, text, windower, retrieval.max_windows):
            regions.append((d, (0, len(text))))
            continue
        passages = split_passages(text, retrieval.passage_chars)
        regions += [(d, r) for r in select_regions(question, text, passages, retrieval.passages)]
        narrowed = True
    return regions if narrowed else None


def _fits(question: str, text: str, windower: WindowShape, max_windows: int) -> bool:
    """Whether reading `text` whole takes at most max_windows windows.

    Decided from lengths in characters where they settle it (a token covers at least one character), and
    by windowing the text otherwise.
    """
    fixed = windower.max_seq_len - windower.n_special
    if len(text) <= _capacity(
        fixed - min(len(question), windower.max_question_tokens), windower, max_windows
    ):
        return True
    if len(text) > _MAX_CHARS_PER_TOKEN * _capacity(fixed, windower, max_windows):
        return False
    return len(windower([question], [text])) <= max_windows


def _capacity(room: int, windower: WindowShape, windows: int) -> int:
    """Context tokens that `windows` windows of `room` context tokens each hold, given their overlap."""
    stride = min(windower.doc_stride, room // 2)
    return room + (windows - 1) * (room - stride)
