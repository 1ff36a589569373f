"""Training examples: SQuAD records -> (question, context, answer span) -> labelled windows."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spanqa.errors import InputError
from spanqa.evaluation.squad import Example, load_squad, locate_answer
from spanqa.reading.windows import Windower, Windows, answer_tokens
from spanqa.training.negatives import make_negatives

_SPEC = re.compile(r"^(?P<path>.+?)(?:@(?P<n>\d+))?(?:\*(?P<r>\d+))?$")


@dataclass
class TrainItem:
    question: str
    context: str
    span: tuple[int, int] | None  # answer characters, None for an unanswerable question


@dataclass
class DataCounts:
    questions: int = 0
    answerable: int = 0
    unanswerable: int = 0
    repaired: int = 0
    skipped: int = 0
    negatives_added: int = 0
    per_file: dict[str, dict[str, int]] = field(default_factory=dict)


def parse_spec(spec: str) -> tuple[Path, int | None, int]:
    """`PATH[@N][*R]`: a data file, optionally N questions sampled from it, repeated R times."""
    m = _SPEC.match(spec)
    if not m:
        raise InputError(f"bad training data spec: {spec!r}")
    path = Path(m["path"])
    n = int(m["n"]) if m["n"] else None
    repeat = int(m["r"]) if m["r"] else 1
    if repeat < 1:
        raise InputError(f"{spec}: repeat count must be at least 1")
    return path, n, repeat


def build_items(
    specs: list[str],
    *,
    negatives: dict[str, float] | None = None,
    max_examples: int | None = None,
    seed: int = 0,
) -> tuple[list[TrainItem], DataCounts]:
    """Read every spec, repair or skip answers, add synthetic negatives, and sample.

    `negatives` maps a kind of synthetic negative (negatives.KINDS) to how many per answerable question.
    """
    rng = random.Random(seed)
    counts = DataCounts()
    items: list[TrainItem] = []
    for spec in specs:
        path, n, repeat = parse_spec(spec)
        examples = load_squad(path)
        if n is not None and n < len(examples):
            examples = rng.sample(examples, n)
        file_counts: dict[str, int] = {"questions": 0, "repaired": 0, "skipped": 0, "negatives_added": 0}
        file_items = []
        for ex in examples:
            item = _to_item(ex, file_counts)
            if item is not None:
                file_items.append(item)
        # synthetic negatives only for files without real ones (SQuAD 1.1 style)
        if not any(ex.is_impossible for ex in examples):
            for kind, rate in (negatives or {}).items():
                if rate > 0:
                    pairs = make_negatives(examples, kind, rate, rng)
                    file_counts[f"negatives_{kind}"] = len(pairs)
                    file_counts["negatives_added"] += len(pairs)
                    file_items += [TrainItem(q, c, None) for q, c in pairs]
        counts.per_file[f"{path.name}" + (f"@{n}" if n else "") + (f"*{repeat}" if repeat > 1 else "")] = (
            file_counts
        )
        counts.repaired += file_counts["repaired"]
        counts.skipped += file_counts["skipped"]
        counts.negatives_added += file_counts["negatives_added"]
        items += file_items * repeat
    if max_examples is not None and max_examples < len(items):
        items = rng.sample(items, max_examples)
    counts.questions = len(items)
    counts.answerable = sum(1 for it in items if it.span is not None)
    counts.unanswerable = counts.questions - counts.answerable
    return items, counts


def _to_item(ex: Example, counts: dict[str, int]) -> TrainItem | None:
    counts["questions"] += 1
    if ex.is_impossible or not ex.answers:
        return TrainItem(ex.question, ex.context, None)
    gold = ex.answers[0]
    span = locate_answer(ex.context, gold)
    if span is None:
        counts["skipped"] += 1
        return None
    if span[0] != gold.start + (len(gold.text) - len(gold.text.lstrip())):
        counts["repaired"] += 1
    return TrainItem(ex.question, ex.context, span)


def label_windows(windower: Windower, items: list[TrainItem]) -> tuple[Windows, np.ndarray]:
    """Windows of all items, and each window's (start, end) answer tokens; (0, 0) means no answer."""
    windows = windower([it.question for it in items], [it.context for it in items])
    labels = np.zeros((len(windows), 2), dtype=np.int64)
    for w, i in enumerate(windows.item):
        span = items[i].span
        if span is not None:
            labels[w] = answer_tokens(windows.offsets[w], *span)
    return windows, labels


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, chunk_batches: int = 50
) -> list[np.ndarray]:
    """Random batches of windows of similar length, so that padding stays small."""
    order = rng.permutation(len(lengths))
    batches = []
    chunk = batch_size * chunk_batches
    for c in range(0, len(order), chunk):
        part = order[c : c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches
