"""/docs and /redoc render with no network: their assets come from an installed package, not a CDN.

Headless Debian Chromium (as tests/test_web.py) against the app served in-process; every request to
another host is recorded and refused.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanqa import Reader
from spanqa.service.app import ServiceSettings, create_app
from test_web import CHROMIUM, CHROMIUM_ARGS, PAGE_WAIT


@pytest.fixture(scope="module")
def server(tiny_bert_dir) -> Iterator[str]:
    import uvicorn

    app = create_app(Reader.load(tiny_bert_dir), ServiceSettings())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def offline_page(server) -> Iterator[tuple]:
    """A Chromium page that may reach the server and nothing else; yields (page, refused URLs)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "Debian's chromium is not installed (.ci/run installs it)"
    refused: list[str] = []

    def only_the_server(route) -> None:
        if route.request.url.startswith(server + "/"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    with tempfile.TemporaryDirectory(prefix="spanqa-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context.route("**/*", only_the_server)
        page = context.new_page()
        page.set_default_timeout(PAGE_WAIT)
        yield page, refused
        context.close()


def test_swagger_ui_renders_offline(server, offline_page):
    page, refused = offline_page
    page.goto(server + "/docs")
    page.wait_for_selector(".swagger-ui .opblock")  # operations rendered from /openapi.json
    text = page.inner_text(".swagger-ui")
    for path in ("/v1/answer", "/v1/answer/batch", "/v1/model"):
        assert path in text
    assert refused == []  # nothing fetched from elsewhere


def test_redoc_renders_offline(server, offline_page):
    page, refused = offline_page
    refused.clear()
    page.goto(server + "/redoc")
    # an operation's description, from /openapi.json
    page.wait_for_function("(document.body.innerText || '').includes('Answer several questions')")
    assert all(url.endswith("logo-mini.svg") for url in refused), refused  # only Redoc's footer logo
