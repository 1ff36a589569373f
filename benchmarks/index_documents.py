"""Indexing speed for PDF, HTML, DOCX and text: PDF pages per second, and a folder of mixed documents.

    python benchmarks/index_documents.py [--pages 200] [--docs 200] [--repeat 3] [--out FILE]

The PDFs are real ones: the repository's own documentation (README.md and docs/*.md, prose and tables),
laid out as HTML and printed to PDF by headless Chromium (Debian's /usr/bin/chromium, as the web tests use),
so they have embedded subset fonts and ToUnicode maps like the PDFs people have. One long PDF of about
--pages pages measures PDF text extraction alone and a whole `index add` (extraction, passages, FTS5);
a folder of --docs documents (a quarter each PDF, HTML, DOCX, text) measures a mixed first run and the
re-run that skips unchanged files. Each timing is the median of --repeat runs into a fresh index.
Single-threaded: indexing uses one core. One table.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from spanqa.evaluation.bench import cpu_model

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(
            f"this benchmark prints its PDFs with Chromium: install Debian's chromium ({CHROMIUM})",
            file=sys.stderr,
        )
        return 2
    from spanqa.retrieval.formats import extract
    from spanqa.retrieval.index import DocumentIndex

    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = [p.read_text(encoding="utf-8") for p in sources]
    with tempfile.TemporaryDirectory(prefix="spanqa-bench-") as tmp:
        work = Path(tmp)
        book, pages = print_book(texts, args.pages, work / "book.pdf")
        folder = build_folder(texts, args.docs, work / "mixed")
        rows = []
        data = book.read_bytes()
        times = [timed(lambda: extract(data, "book.pdf")) for _ in range(args.repeat)]
        rows.append(("PDF text extraction (PDFium)", f"{pages} pages", *median(times), pages, "pages/s"))
        if args.pypdf:
            times = [timed(lambda: pypdf_text(data)) for _ in range(args.repeat)]
            rows.append(("for comparison: pypdf", f"{pages} pages", *median(times), pages, "pages/s"))
        times = []
        for n in range(args.repeat):
            with DocumentIndex(work / f"book{n}.db") as index:
                times.append(timed(lambda index=index: index.add([book])))
        rows.append(("index add: one PDF", f"{pages} pages", *median(times), pages, "pages/s"))
        first, again = [], []
        for n in range(args.repeat):
            with DocumentIndex(work / f"mixed{n}.db") as index:
                first.append(timed(lambda index=index: index.add([folder])))
                again.append(timed(lambda index=index: index.add([folder])))
        count = len(list(folder.iterdir()))
        rows.append(("index add: mixed folder", f"{count} files", *median(first), count, "files/s"))
        rows.append(("re-run, all unchanged", f"{count} files", *median(again), count, "files/s"))
    print(format_table(rows, args))
    if args.out:
        Path(args.out).write_text(json.dumps([list(r) for r in rows], indent=1), encoding="utf-8")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=200, help="pages of the long PDF (about)")
    p.add_argument("--docs", type=int, default=200, help="files in the mixed folder")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pypdf", action="store_true", help="also time pypdf's text extraction, for comparison")
    p.add_argument("--out", help="also write the rows as JSON")
    return p.parse_args(argv)


def timed(work) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (on a shared machine the wall time includes waiting)."""
    began, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - began, time.process_time() - cpu


def median(times: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def pypdf_text(data: bytes) -> list[str]:
    import io

    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def as_html(texts: list[str]) -> str:
    """Markdown shown as paragraphs (not rendered: the text is what matters), one document after another."""
    blocks = []
    for text in texts:
        for para in text.split("\n\n"):
            if para.strip():
                tag = "h2" if para.startswith("#") else "p"
                blocks.append(f"<{tag}>{html.escape(para.strip('# '))}</{tag}>")
    style = "body{font:11pt serif;margin:0} p,h2{margin:0 0 .6em}"
    head = f"<head><meta charset='utf-8'><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(blocks)}</body></html>"


def print_pdf(page_html: str, out: Path) -> int:
    """Print HTML to an A4 PDF with headless Chromium; the number of pages."""
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_content(page_html)
        page.pdf(
            path=str(out), format="A4", margin={"top": "2cm", "bottom": "2cm", "left": "2cm", "right": "2cm"}
        )
        browser.close()
    return len(PdfReader(out).pages)


def print_book(texts: list[str], pages: int, out: Path) -> tuple[Path, int]:
    """A PDF of about `pages` pages: the documentation repeated until long enough."""
    one = print_pdf(as_html(texts), out)
    copies = max(1, round(pages / one))
    return out, print_pdf(as_html(texts * copies), out)


def build_folder(texts: list[str], count: int, folder: Path) -> Path:
    """`count` files, a quarter each PDF (one or two pages), HTML, DOCX and text, of the docs' paragraphs."""
    import docx

    folder.mkdir()
    paragraphs = [p for t in texts for p in t.split("\n\n") if len(p.strip()) > 40]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        for i in range(count):
            chunk = [paragraphs[(i * 7 + k) % len(paragraphs)] for k in range(8)]
            kind = i % 4
            name = folder / f"doc{i:04}"
            if kind == 0:
                page.set_content(as_html([paragraphs[(i * 3 + k) % len(paragraphs)] for k in range(12)]))
                page.pdf(path=str(name.with_suffix(".pdf")), format="A4")
            elif kind == 1:
                name.with_suffix(".html").write_text(as_html(chunk), encoding="utf-8")
            elif kind == 2:
                document = docx.Document()
                for para in chunk:
                    document.add_paragraph(para)
                document.save(str(name.with_suffix(".docx")))
            else:
                name.with_suffix(".txt").write_text("\n\n".join(chunk), encoding="utf-8")
        browser.close()
    return folder


def format_table(rows, args) -> str:
    cpu = cpu_model()
    lines = [
        f"index_documents: {platform.machine()}, {cpu}, {os.cpu_count()} CPUs; median of {args.repeat} runs",
        "",
        "| what | size | wall s | rate (wall) | CPU s | rate (CPU) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for what, size, wall, cpu, n, unit in rows:
        rate_wall, rate_cpu = f"{n / wall:,.1f} {unit}", f"{n / max(cpu, 1e-9):,.1f} {unit}"
        lines.append(f"| {what} | {size} | {wall:.2f} | {rate_wall} | {cpu:.2f} | {rate_cpu} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
