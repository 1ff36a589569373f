"""The web page with documents: uploaded PDF/DOCX/text read by the server, limits said in the unit the user
sees, and index mode showing each answer in its passage with the cited page. Debian's Chromium, driven by
Playwright, against `spanqa serve --db` of an index built here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from documents import html_page, pdf_bytes, write_docx
from spanqa.retrieval.index import DocumentIndex
from test_web import _screenshot, browser  # noqa: F401  (the module's Chromium fixture)

START_WAIT = 180.0
PAGE_WAIT = 60_000
PAGES = [
    ["The Old Point lighthouse stands on a granite headland.", "Construction began in 1846."],
    ["The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."],
]
QUESTION = "When was the lighthouse first lit?"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("web-docs")
    (folder / "lighthouse.pdf").write_bytes(pdf_bytes(PAGES))
    (folder / "harbour.html").write_text(
        html_page("Harbour", ["The harbour froze in 1903."]), encoding="utf-8"
    )
    with DocumentIndex(folder / "i.db") as index:
        index.add([folder / "lighthouse.pdf", folder / "harbour.html"])
    return folder


@pytest.fixture(scope="module")
def server(corpus) -> Iterator[str]:
    from spanqa.cli.serve import child_server

    with child_server(["--db", str(corpus / "i.db")], start_timeout=START_WAIT) as url:
        yield url


@pytest.fixture
def page(browser, server):  # noqa: F811
    page = browser.new_page()
    page.set_default_timeout(PAGE_WAIT)
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('model-info').textContent.length > 0")
    yield page
    page.close()


def _upload(page, path: Path) -> None:
    page.evaluate("document.getElementById('context').value = ''")  # so the wait below sees the new text
    page.set_input_files("#file", str(path))
    page.wait_for_function(
        "document.getElementById('context').value.length > 0 || "
        "document.getElementById('result').dataset.state === 'error'"
    )


def _ask(page, question: str) -> None:
    page.fill("#question", question)
    page.click("#ask")
    page.wait_for_selector("#result[data-state=done], #result[data-state=error]")


def test_an_uploaded_pdf_is_read_by_the_server_and_the_answer_names_its_page(page, server, corpus, tmp_path):
    pdf = corpus / "lighthouse.pdf"
    extracted = httpx.post(
        server + "/v1/documents/extract", files={"file": (pdf.name, pdf.read_bytes())}
    ).json()
    _upload(page, pdf)
    assert page.input_value("#context") == extracted["text"]
    assert page.inner_text("#source") == "lighthouse.pdf (pdf · 2 pages)"
    _ask(page, QUESTION)
    api = httpx.post(
        server + "/v1/answer", json={"question": QUESTION, "context": extracted["text"]}, timeout=60
    ).json()
    best = api["answers"][0]
    assert page.inner_text("#answer-mark") == best["text"] == "12 March 1849"
    assert page.inner_text("#source") == "lighthouse.pdf (pdf · 2 pages) · answer on page 2"
    _screenshot(page, "web-upload-pdf.png")
    write_docx(tmp_path / "hire.docx", [("heading", "Boats"), ("paragraph", "A skiff costs 40 euros.")])
    _upload(page, tmp_path / "hire.docx")
    assert page.input_value("#context") == "Boats\n\nA skiff costs 40 euros."
    assert page.inner_text("#source") == "hire.docx (docx)"


def test_a_non_utf8_upload_is_refused_with_the_command_line_message(page, tmp_path, capsys):
    from spanqa.cli.main import main

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Café au lait".encode("latin-1"))
    assert main(["index", "add", "--db", str(tmp_path / "i.db"), str(bad)]) == 2
    cli = capsys.readouterr().err.strip()
    _upload(page, bad)
    message = page.inner_text("#error")
    assert message == f"file {bad.name} is not valid UTF-8 (byte 3)" and cli.endswith(
        "is not valid UTF-8 (byte 3)"
    )
    assert page.input_value("#context") == "" and "\ufffd" not in page.content()


def test_too_large_texts_are_refused_in_characters(page, tmp_path):
    huge = tmp_path / "huge.txt"
    huge.write_text("word " * 2_400_000, encoding="utf-8")  # 12 MB: over the upload limit
    _upload(page, huge)
    assert "at most 200,000 characters" in page.inner_text("#error")
    page.fill("#context", "word " * 50_000)  # 250,000 characters pasted
    _ask(page, "Which word?")
    assert page.inner_text("#error") == "The text has 250,000 characters; this server reads at most 200,000."


def test_index_mode_shows_the_cited_page_and_the_answer_in_its_passage(page, server, corpus):
    page.wait_for_selector("#mode:not([hidden])")
    assert page.inner_text("#mode-index-label") == "the index (2 documents)"
    page.check("#mode-index")
    assert not page.is_visible("#context")
    _ask(page, QUESTION)
    api = httpx.post(server + "/v1/ask", json={"question": QUESTION, "top_k": 3}, timeout=60).json()
    best = api["answers"][0]
    assert page.inner_text("#answer-mark") == best["text"]
    assert page.inner_text("#passage") == best["passage_text"]
    assert page.inner_text("#cited-page").startswith(f"{best['doc']} · page {best['page']}")
    assert best["doc"] == "lighthouse.pdf" and best["page"] == 2
    _screenshot(page, "web-index-mode.png")
    page.check("#mode-text")
    assert page.is_visible("#context") and not page.is_visible("#index-view")
