"""The web page end to end: `spanqa serve` in a subprocess, Debian's Chromium driven by Playwright.

The highlighted text must be exactly the answer the API returns, also after emoji (JavaScript counts
UTF-16 code units, the API counts code points). Screenshots go to test-artifacts/ for people to look at.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_WAIT = 180.0  # seconds: loading torch on a busy 2-core CI machine
PAGE_WAIT = 60_000  # milliseconds


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`spanqa serve` of the shipped model in a child process (real answers in the screenshots)."""
    from spanqa.cli.serve import child_server

    with child_server([], start_timeout=START_WAIT) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "Debian's chromium is not installed (.ci/run installs it)"
    with tempfile.TemporaryDirectory(prefix="spanqa-chromium-") as profile, sync_playwright() as p:
        # a persistent context is how Playwright takes a fresh --user-data-dir of ours
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    page.set_default_timeout(PAGE_WAIT)
    page.goto(server + "/")
    yield page
    page.close()


def _ask(page, context: str, question: str) -> None:
    page.fill("#context", context)
    page.fill("#question", question)
    page.click("#ask")
    page.wait_for_selector("#result[data-state=done], #result[data-state=error]")


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("plain", "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."),
        (
            "emoji",
            "😀🚀 The lighthouse 🏳️‍🌈 was first lit on 12 March 1849 👍🏽, using a lamp that burned 𝔴hale oil",
        ),
    ],
)
def test_the_highlight_is_the_answer_the_api_returns(page, server, name, context):
    question = "When was the lighthouse first lit?"
    api = httpx.post(
        server + "/v1/answer", json={"question": question, "context": context, "top_k": 3}, timeout=60
    ).json()
    _ask(page, context, question)
    best = api["answers"][0]
    assert page.inner_text("#answer-mark") == best["text"] == context[best["start"] : best["end"]]
    assert page.inner_text("#answer-text") == best["text"]
    assert page.is_visible("#no-answer") == api["no_answer"]
    assert page.locator("#alternatives li").count() == (len(api["answers"]) if len(api["answers"]) > 1 else 0)
    # the whole text is still there around the mark, unchanged
    assert page.inner_text("#view") == context
    _screenshot(page, f"web-answer-{name}.png")


def test_offsets_convert_from_code_points_for_any_text(page):
    texts = ["abc", "😀x", "a😀b🚀c", "𝔘𝔫𝔦 code", "👍🏽 ok", "é̃ and 🏳️‍🌈 flags", "北京 😀 Москва"]
    cases = [(t, s, e) for t in texts for s in range(len(t) + 1) for e in range(s, len(t) + 1)]
    got = page.evaluate("cs => cs.map(([t, s, e]) => window.spanqa.sliceCodePoints(t, s, e))", cases)
    assert got == [t[s:e] for t, s, e in cases]


def test_no_answer_is_shown_clearly_and_alternatives_can_be_picked(page):
    context = "👋 Hello 🌍. The keeper, Thomas Brennan 🧑‍🚒, left in 1989. 🎉 Goodbye."
    spans = ["Thomas Brennan", "1989", "Goodbye"]
    answers = []
    for i, text in enumerate(spans):
        start = context.index(text)
        answers.append({"text": text, "start": start, "end": start + len(text), "score": 0.3 - i * 0.1})
    fake = {
        "answers": answers,
        "no_answer": True,
        "answerable": 0.2,
        "answerable_prior": 0.5,
        "null_score_diff": -2.5,
    }
    page.route(
        "**/v1/answer",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(fake)),
    )
    page.wait_for_function("document.getElementById('model-info').textContent.length > 0")
    page.fill("#prior", "50")  # the prior the fake reply was computed at
    page.dispatch_event("#prior", "input")
    _ask(page, context, "Who was the first keeper?")
    assert page.is_visible("#no-answer")
    assert "Probably not in the text" in page.inner_text("#no-answer")
    assert "30%" in page.inner_text("#span-score")  # the best guess and its probability, always shown
    assert "20%" in page.inner_text("#answerable")
    mark = page.locator("#answer-mark")
    assert mark.inner_text() == "Thomas Brennan"
    assert "guess" in (mark.get_attribute("class") or "")
    _screenshot(page, "web-no-answer.png")
    for rank, text in enumerate(spans):
        page.click(f"#alternatives li[data-rank='{rank}']")
        assert page.inner_text("#answer-mark") == text


def test_server_errors_are_shown_not_swallowed_and_clear_the_old_highlight(page):
    context = "The keeper was Thomas Brennan."
    _ask(page, context, "Who was the keeper?")
    assert page.locator("#answer-mark").count() == 1
    page.fill("#question", "why " * 300)  # too many tokens for one window: a 422 from the API
    page.click("#ask")
    page.wait_for_selector("#result[data-state=error]")
    assert "question" in page.inner_text("#error")
    assert page.locator("#answer-mark").count() == 0  # no answer shown: nothing marked in the text
    assert page.inner_text("#view") == context


def test_the_prior_slider_re_decides_the_answer_without_a_new_request(page):
    context = "The keeper, Thomas Brennan, left in 1989."
    start = context.index("Thomas Brennan")
    fake = {
        "answers": [{"text": "Thomas Brennan", "start": start, "end": start + 14, "score": 0.8}],
        "no_answer": True,
        "answerable": 0.4,
        "answerable_prior": 0.5,
        "null_score_diff": 0.1,
    }
    requests = []

    def reply(route):
        requests.append(json.loads(route.request.post_data))
        route.fulfill(status=200, content_type="application/json", body=json.dumps(fake))

    page.route("**/v1/answer", reply)
    page.wait_for_function("document.getElementById('model-info').textContent.length > 0")
    page.fill("#prior", "50")
    page.dispatch_event("#prior", "input")
    _ask(page, context, "Who was the keeper?")
    assert requests[-1]["answerable_prior"] == 0.5 and page.is_visible("#no-answer")
    page.fill("#prior", "80")  # odds x4: 0.4 -> 0.727
    page.dispatch_event("#prior", "input")
    assert not page.is_visible("#no-answer") and "73%" in page.inner_text("#answerable")
    assert "guess" not in (page.get_attribute("#answer-mark", "class") or "")
    assert len(requests) == 1  # decided again on the page, from the probabilities it already has
    page.fill("#prior", "20")
    page.dispatch_event("#prior", "input")
    assert page.is_visible("#no-answer") and "14%" in page.inner_text("#answerable")
    _screenshot(page, "web-prior-slider.png")


def test_uploaded_file_is_read_as_utf8(page, tmp_path):
    file = tmp_path / "notes.txt"
    text = "Zürich 😀 is in Switzerland.\nIts lake is called Lake Zürich.\n"
    file.write_bytes(text.encode("utf-8"))
    page.set_input_files("#file", str(file))
    page.wait_for_function("document.getElementById('context').value.length > 0")  # the read is async
    assert page.input_value("#context") == text
    assert page.inner_text("#count") == f"{len(text)} characters"


def test_the_page_loads_the_model_name(page, server):
    info = httpx.get(server + "/v1/model", timeout=60).json()
    page.wait_for_function("document.getElementById('model-info').textContent.length > 0")
    assert info["name"] in page.inner_text("#model-info")
