"""A document -> passages of bounded length that keep their character offsets.

Passages end on the most natural boundary that keeps them under `max_chars`: a blank line (paragraph),
else a line break, else a sentence end, else a space; only a single word longer than `max_chars` is cut
inside. Each passage is stripped of surrounding whitespace, so `doc[p.start:p.end] == p.text` and every
non-space character of the document is in exactly one passage.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from spanqa.errors import check_positive

DEFAULT_PASSAGE_CHARS = 1000

# Coarsest first: a piece too long at one level is split again at the next.
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_LINE = re.compile(r"\n\s*")
# A sentence ends with . ! ? or an ellipsis, maybe a closing quote or bracket, then whitespace; a CJK full
# stop needs no space after it. Only the whitespace separates sentences: punctuation stays with its text.
_SENTENCE = re.compile(r"(?<=[.!?…][\"'”’)\]])\s+|(?<=[.!?…])\s+|(?<=[。！？])\s*")
_SPACE = re.compile(r"\s+")
_LEVELS = (_PARAGRAPH, _LINE, _SENTENCE, _SPACE)


@dataclass(frozen=True)
class Passage:
    """`text == document[start:end]`."""

    start: int
    end: int
    text: str


def split_passages(text: str, max_chars: int = DEFAULT_PASSAGE_CHARS) -> list[Passage]:
    """The passages of `text`, in order; none longer than `max_chars` characters."""
    check_positive("passage_chars", max_chars)
    spans = _split(text, 0, len(text), 0, max_chars)
    return [Passage(a, b, text[a:b]) for a, b in spans]


def _split(text: str, start: int, end: int, level: int, max_chars: int) -> list[tuple[int, int]]:
    """Stripped spans of text[start:end], packed up to max_chars, cut at `level` or finer boundaries."""
    start, end = _strip(text, start, end)
    if start >= end:
        return []
    if end - start <= max_chars:
        return [(start, end)]
    if level == len(_LEVELS):  # one word longer than a passage: cut it
        return [(a, min(a + max_chars, end)) for a in range(start, end, max_chars)]
    pieces: list[tuple[int, int]] = []
    cursor = start
    for m in _LEVELS[level].finditer(text, start, end):
        if m.start() > cursor:
            pieces += _split(text, cursor, m.start(), level + 1, max_chars)
        cursor = max(cursor, m.end())
    pieces += _split(text, cursor, end, level + 1, max_chars)
    return _pack(pieces, max_chars)


def _pack(pieces: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Neighbouring pieces joined into passages of similar length, each at most max_chars.

    Each passage aims at an even share of the text still to pack (rather than filling up to the brim),
    which avoids a tiny last passage: it would read badly and rank oddly.
    """
    out: list[tuple[int, int]] = []
    end = pieces[-1][1] if pieces else 0
    target = 0.0
    for a, b in pieces:
        if out:
            first, last = out[-1]
            grown = b - first
            if grown <= max_chars and abs(grown - target) <= abs(target - (last - first)):
                out[-1] = (first, b)
                continue
        target = (end - a) / math.ceil((end - a) / max_chars)
        out.append((a, b))
    return out


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
