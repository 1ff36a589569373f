"""Index hits -> the stretches of documents the reader reads, and its answers back as cited offsets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from spanqa.prediction import Citation


@dataclass
class Region:
    """A stretch of one document read as one context: hits with consecutive passage numbers on one page
    joined, so an answer may cross the seam between passages (never a page break)."""

    doc: str
    start: int
    end: int
    page: int | None
    passages: list[tuple[int, int, int]]  # (number, start, end), in order
    text: str = ""  # the document's text[start:end], read from the index
    source: str = ""
    format: str = "text"

    def cite(self, answer: Any) -> Any:
        """The reader's answer (offsets into this region's text) as offsets into the document, cited."""
        start, end = self.start + answer.start, self.start + answer.end
        first = max((p for p in self.passages if p[1] <= start), key=lambda p: p[1])
        last = max((p for p in self.passages if p[1] < end), key=lambda p: p[1])
        quote = self.text[first[1] - self.start : last[2] - self.start]
        citation = Citation(self.source, self.format, self.page, first[1], last[2], quote)
        return dataclasses.replace(
            answer, start=start, end=end, doc=self.doc, passage=first[0], citation=citation
        )


def regions_of(hits: list[Any]) -> list[Region]:
    """Hits (index.Hit) grouped into the regions to read, ordered by document and passage."""
    regions: list[Region] = []
    for h in sorted(hits, key=lambda h: (h.doc, h.passage)):
        last = regions[-1] if regions else None
        if last and last.doc == h.doc and last.passages[-1][0] == h.passage - 1 and last.page == h.page:
            last.end = h.end
            last.passages.append((h.passage, h.start, h.end))
        else:
            regions.append(Region(h.doc, h.start, h.end, h.page, [(h.passage, h.start, h.end)]))
    return regions
