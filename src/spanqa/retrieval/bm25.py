"""BM25 ranking of passages against a question, by SQLite's FTS5 (in memory, or in a DocumentIndex).

One ranking for both uses: the persistent index (index.py) and the in-memory ranking of one long
document's passages share the FTS5 tokenizer and the query built here, so a passage ranks the same way
whether it is in the index or in a text given to Reader.answer.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

# Lowercase, accents removed, English Porter stemming ("lighthouses" finds "lighthouse").
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

# Function words that carry no topic; dropping them from the question keeps BM25 from ranking passages by
# how often they say "the" or "was". Kept short: words like "first" or "new" can matter in a question.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let me more most
    my myself no nor not of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom whose why will with would you
    your yours yourself yourselves s t d ll m re ve
    """.split()
)

_WORD = re.compile(r"\w+")


def query_terms(question: str) -> list[str]:
    """The question's distinct lowercase words without stopwords (all its words if only stopwords)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(question)))
    content = [w for w in words if w not in STOPWORDS]
    return content or words


def match_query(question: str) -> str | None:
    """An FTS5 MATCH expression finding passages with any of the question's terms; None if it has none."""
    terms = query_terms(question)
    if not terms:
        return None
    # Each term quoted, so FTS5 syntax in a question (AND, NEAR, *, ^, -) is searched for as text.
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def rank_passages(question: str, passages: Sequence[str], k: int) -> list[int]:
    """Indexes of the (at most) k passages ranked best for the question, best first.

    Passages sharing no term with the question are not returned, so the list may be shorter than k.
    """
    query = match_query(question)
    if query is None or not passages or k < 1:
        return []
    db = sqlite3.connect(":memory:")
    try:
        db.execute(f"CREATE VIRTUAL TABLE p USING fts5(text, tokenize='{FTS_TOKENIZER}')")
        db.executemany("INSERT INTO p(rowid, text) VALUES (?, ?)", enumerate(passages))
        rows = db.execute(
            "SELECT rowid FROM p WHERE p MATCH ? ORDER BY bm25(p), rowid LIMIT ?", (query, k)
        ).fetchall()
    finally:
        db.close()
    return [int(r[0]) for r in rows]
