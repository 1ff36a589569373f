"""`spanqa serve`: the HTTP service and web page (service.py) run by uvicorn."""

from __future__ import annotations

import argparse
import logging
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from spanqa.cli.common import add_model, load_reader
from spanqa.errors import InputError

log = logging.getLogger("spanqa.serve")
# Seconds uvicorn waits for open requests after SIGTERM: by then they have all been answered 503 (the
# batcher fails them at once), so this only bounds a client slow to read its answer.
SHUTDOWN_GRACE_S = 1.0


def _add_serve(p: argparse.ArgumentParser) -> None:
    from spanqa.service.settings import ServiceSettings

    d = ServiceSettings()
    add_model(p)
    p.add_argument(
        "--db", metavar="FILE", help="a document index to answer from at /v1/ask (spanqa index add)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="per-request limit in seconds (504)")
    p.add_argument(
        "--max-context-chars", type=int, default=d.max_context_chars, help="longest text per question (422)"
    )
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="largest request body (413)")
    p.add_argument(
        "--max-windows", type=int, default=d.max_windows, help="model windows one request may take (422)"
    )
    p.add_argument("--max-texts", type=int, default=d.max_texts, help="texts in one request (422)")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="questions waiting before 503")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="questions per shared model call")
    p.add_argument(
        "--batch-wait-ms", type=float, default=d.batch_wait_ms, help="wait for more questions to batch"
    )


def _serve(args: argparse.Namespace) -> int:
    from spanqa.cli.common import require
    from spanqa.service.app import create_app
    from spanqa.service.settings import ServiceSettings

    require("uvicorn", "spanqa serve")  # before the model loads: a missing server is one line, at once

    settings = ServiceSettings(
        max_body_bytes=_positive(args.max_body_bytes, "--max-body-bytes"),
        max_context_chars=_positive(args.max_context_chars, "--max-context-chars"),
        max_windows=_positive(args.max_windows, "--max-windows"),
        max_texts=_positive(args.max_texts, "--max-texts"),
        timeout_s=_positive(args.timeout, "--timeout"),
        max_queue=_positive(args.max_queue, "--max-queue"),
        max_batch=_positive(args.max_batch, "--max-batch"),
        batch_wait_ms=max(0.0, args.batch_wait_ms),
    )
    sock = _listen(args.host, args.port)  # before loading the model: a busy port fails at once
    index = None
    try:
        if args.db:
            from spanqa.retrieval.index import DocumentIndex

            index = DocumentIndex(args.db, create=False)
        reader = load_reader(args)
        reader.answer("Is the model ready?", "The model is ready.")  # the first request pays no warm-up
        _log_json_access()
        app = create_app(reader, settings, index=index)
        host, port = sock.getsockname()[:2]
        print(
            f"spanqa: serving {reader.model_dir} ({reader.backend.name}) on http://{host}:{port}/  "
            "(API docs: /docs)",
            file=sys.stderr,
            flush=True,
        )
        _run(app, sock)
    finally:
        sock.close()
        if index is not None:
            index.close()
    return 0


def _run(app: Any, sock: socket.socket) -> None:
    """uvicorn until SIGINT/SIGTERM. On the signal the batcher first fails the questions in flight (503, at
    once), so shutting down waits for one forward pass at most, not for every request's work."""
    import uvicorn

    batcher = app.state.batcher

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            batcher.shutdown()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {port}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _log_json_access() -> None:
    """Access lines are bare JSON objects, one per line, so log shippers can parse them."""
    access = logging.getLogger("spanqa.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def _positive(value: float, name: str) -> float:
    if value <= 0:
        raise InputError(f"{name} must be positive, got {value}")
    return value


class ServerURL(str):
    """A child server's URL, with its process (to signal it)."""

    process: subprocess.Popen


@contextmanager
def child_server(args: list[str], start_timeout: float = 180.0) -> Iterator[ServerURL]:
    """`spanqa serve ARGS` on a free port in a child process, for tests and benchmarks; yields its URL
    (a ServerURL: `.process` is the child).

    The child's stderr is read all along (a full pipe would block its logging): access lines are dropped,
    anything else is passed on to ours.
    """
    main = "import sys; from spanqa.cli.main import main; sys.exit(main())"
    cmd = [sys.executable, "-c", main, "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    lines: queue.Queue[str | None] = queue.Queue()
    started = threading.Event()

    def pump() -> None:
        for line in proc.stderr or ():
            if not started.is_set():
                lines.put(line)
            elif not line.startswith("{"):
                sys.stderr.write(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = ServerURL(_wait_for_url(proc, lines, start_timeout))
        url.process = proc
        started.set()
        yield url
    finally:
        started.set()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_url(proc: subprocess.Popen, lines: queue.Queue, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError(f"spanqa serve did not start in {timeout:g} s:\n{''.join(seen)}") from None
        if line is None:
            raise RuntimeError(f"spanqa serve exited with {proc.wait()}:\n{''.join(seen)}")
        seen.append(line)
        found = re.search(r" on (http://\S+):(\d+)/", line)
        if found:
            return f"{found.group(1)}:{found.group(2)}"


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "serve": (_add_serve, _serve, "serve answers over HTTP, with a web page at / and API docs at /docs"),
}
