"""The HTTP service: answers equal the library's, every malformed request gets its 4xx naming the field,
micro-batching shares model calls, and overload, timeouts and bugs never stop the server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from spanqa import Reader
from spanqa.service.app import ServiceSettings, create_app

CONTEXT = "😀 The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."
GOOD = {"question": "When was the lighthouse first lit?", "context": CONTEXT}
LONG_WAIT = 120.0  # a slow, shared CI machine must not turn into 504s where none is expected


@pytest.fixture(scope="module")
def reader(tiny_bert_dir) -> Reader:
    return Reader.load(tiny_bert_dir)


@contextmanager
def serving(reader: Reader, **settings) -> Iterator[TestClient]:
    app = create_app(reader, ServiceSettings(**{"timeout_s": LONG_WAIT, **settings}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def client(reader) -> Iterator[TestClient]:
    with serving(reader, max_body_bytes=20_000, max_context_chars=5_000, max_batch_items=4) as c:
        yield c


class Gate:
    """Records the questions of every Reading the service makes and the order its forward passes run in,
    and holds the first forward pass until released, so that tests can pile requests up behind it."""

    def __init__(self, reader: Reader, monkeypatch: pytest.MonkeyPatch, fail: Exception | None = None):
        self.readings: list[list[str]] = []
        self.passes: list[str] = []  # per forward pass: the first question of the Reading it belongs to
        self.release = threading.Event()
        self.fail = fail
        original_reading, original_run = reader.reading, reader.backend.run
        current: list[str] = []

        def reading(items, **kwargs):
            items = list(items)
            self.readings.append([q for q, _ in items])
            made = original_reading(items, **kwargs)
            step = made.step

            def logged_step():
                current[:] = [items[0][0]]
                return step()

            made.step = logged_step
            return made

        def run(inputs):
            self.passes.append(current[0] if current else "?")
            if len(self.passes) == 1:
                self.release.wait(LONG_WAIT)
            if self.fail is not None:
                error, self.fail = self.fail, None
                raise error
            return original_run(inputs)

        monkeypatch.setattr(reader, "reading", reading)
        monkeypatch.setattr(reader.backend, "run", run)


def assert_same_prediction(got: dict, expected: dict) -> None:
    """Equal answers and offsets; scores equal up to float rounding (batching pads windows differently)."""
    assert got["no_answer"] == expected["no_answer"]
    assert got["answerable"] == pytest.approx(expected["answerable"], abs=1e-4)
    assert got["answerable_prior"] == expected["answerable_prior"]
    assert [{**a, "score": 0} for a in got["answers"]] == [{**a, "score": 0} for a in expected["answers"]]
    assert [a["score"] for a in got["answers"]] == pytest.approx([a["score"] for a in expected["answers"]])
    if expected["null_score_diff"] is None:  # no span at all: JSON has no infinity
        assert got["null_score_diff"] is None
    else:
        assert got["null_score_diff"] == pytest.approx(expected["null_score_diff"], abs=1e-4)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LONG_WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def hold_first_call(client: TestClient, gate: Gate, out: dict) -> threading.Thread:
    """Send a request that the gate holds inside the model, so that the next ones queue behind it."""
    first = post_in_thread(client, "/v1/answer", GOOD, out, "first")
    wait_for(lambda: len(gate.passes) == 1, "the first forward pass")
    return first


def post_in_thread(client: TestClient, path: str, body: dict, out: dict, key: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.__setitem__(key, client.post(path, json=body)))
    thread.start()
    return thread


def test_answer_equals_the_library_and_offsets_index_the_text(client, reader):
    r = client.post("/v1/answer", json={**GOOD, "top_k": 3})
    assert r.status_code == 200
    body = r.json()
    assert_same_prediction(body, reader.answer(GOOD["question"], CONTEXT, top_k=3).to_dict())
    for a in body["answers"]:
        assert CONTEXT[a["start"] : a["end"]] == a["text"]  # code-point offsets, emoji included
    assert r.headers["x-request-id"]


def test_several_contexts_carry_doc(client):
    texts = ["The tower is 38 metres tall.", "The lamp burned whale oil."]
    body = client.post("/v1/answer", json={"question": "How tall?", "contexts": texts, "top_k": 2}).json()
    for a in body["answers"]:
        assert texts[a["doc"]][a["start"] : a["end"]] == a["text"]


def test_batch_endpoint_keeps_order_and_equals_single_answers(client):
    items = [
        {"question": "When was it lit?", "context": CONTEXT},
        {"question": "What did it burn?", "contexts": ["Whale oil.", "Paraffin later."], "top_k": 2},
        {"question": "Who?", "context": "Margaret Hale built it.", "null_threshold": -100.0},
        {"question": "Who?", "context": "Margaret Hale built it.", "answerable_prior": 0.9},
    ]
    r = client.post("/v1/answer/batch", json={"items": items})
    assert r.status_code == 200
    singles = [client.post("/v1/answer", json=item).json() for item in items]
    assert len(r.json()["results"]) == len(singles)
    for got, expected in zip(r.json()["results"], singles):
        assert_same_prediction(got, expected)


MALFORMED = [
    # (body, headers, status, field)
    ({"context": CONTEXT}, None, 422, "question"),
    ({**GOOD, "question": "   "}, None, 422, "question"),
    ({**GOOD, "question": 42}, None, 422, "question"),
    ({**GOOD, "context": ["not", "a string"]}, None, 422, "context"),
    ({**GOOD, "topk": 3}, None, 422, "topk"),
    ({**GOOD, "top\nk\x04": 3}, None, 422, "top\nk\x04"),  # the message stays one line (found by fuzzing)
    ({**GOOD, "top_k": 0}, None, 422, "top_k"),
    ({**GOOD, "top_k": 10_000}, None, 422, "top_k"),
    ({**GOOD, "top_k": "3"}, None, 422, "top_k"),
    ({**GOOD, "max_answer_len": -1}, None, 422, "max_answer_len"),
    ({**GOOD, "null_threshold": "high"}, None, 422, "null_threshold"),
    (b'{"question": "q", "context": "text", "null_threshold": NaN}', None, 422, "null_threshold"),
    ({**GOOD, "answerable_prior": 1.0}, None, 422, "answerable_prior"),
    ({**GOOD, "answerable_prior": 0}, None, 422, "answerable_prior"),
    ({**GOOD, "answerable_prior": "0.5"}, None, 422, "answerable_prior"),
    ({**GOOD, "answerable_prior": 0.5, "null_threshold": 1.0}, None, 422, "answerable_prior"),
    ({"question": "q"}, None, 422, "context"),
    ({**GOOD, "contexts": ["another"]}, None, 422, "context"),
    ({"question": "q", "contexts": []}, None, 422, "contexts"),
    ({"question": "q", "contexts": ["fine", " "]}, None, 422, "contexts[1]"),
    ({**GOOD, "context": "binary\x00data"}, None, 422, "context"),
    (b'{"question": "q", "context": "broken \\ud800 text"}', None, 422, "context"),
    ({**GOOD, "context": "x" * 5_001}, None, 422, "context"),
    ({**GOOD, "question": "q" * 2_001}, None, 422, "question"),
    ({**GOOD, "question": "who " * 200}, None, 422, "question"),  # more tokens than a window allows
    (b'{"question": "q", "context": ', None, 422, None),
    (b'{"question": "q", "context": "caf\xe9 au lait"}', None, 422, "context"),  # Latin-1, not UTF-8
    (b'{"question": "\xff\xfe", "context": "text"}', None, 422, "question"),
    (b'{"question": "q", "contexts": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", None, 422, "contexts"),
    (b"[" * 5_000 + b"]" * 5_000, None, 422, None),
    (b"[1, 2]", None, 422, None),
    (b"", None, 422, None),
    (json.dumps(GOOD).encode(), {"content-type": "text/plain"}, 415, None),
    (json.dumps(GOOD).encode(), {"content-type": ""}, 415, None),
    ({**GOOD, "context": "x" * 30_000}, None, 413, None),
]


@pytest.mark.parametrize(("body", "headers", "status", "field"), MALFORMED)
def test_malformed_requests_get_their_4xx_and_the_server_keeps_serving(client, body, headers, status, field):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    r = client.post("/v1/answer", content=body, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["message"] and error["request_id"] == r.headers["x-request-id"]
    assert "\n" not in error["message"]
    if field is not None:
        assert error["field"] == field, error
    assert client.post("/v1/answer", json=GOOD).status_code == 200


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([], "items"),
        ([GOOD] * 5, "items"),  # more than max_batch_items
        ([GOOD, {**GOOD, "question": ""}], "items[1].question"),
        ([GOOD, GOOD, {"question": "q", "contexts": ["a", ""]}], "items[2].contexts[1]"),
        ([GOOD, {**GOOD, "top_k": 0}], "items[1].top_k"),
    ],
)
def test_malformed_batches_name_the_item(client, items, field):
    r = client.post("/v1/answer/batch", json={"items": items})
    assert r.status_code == 422
    assert r.json()["field"] == field
    assert client.post("/v1/answer/batch", json={"items": [GOOD]}).status_code == 200


def test_an_unparsable_batch_names_the_item(client):
    body = b'{"items": [{"question": "q", "context": "ok"}, {"question": "q", "context": "bad \xe9"}]}'
    r = client.post("/v1/answer/batch", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["field"] == "items[1].context" and "not UTF-8" in r.json()["message"]


def test_body_limit_holds_without_content_length(client):
    def chunks():
        for _ in range(30):
            yield b" " * 1_000

    r = client.post("/v1/answer", content=chunks(), headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413
    assert client.post("/v1/answer", json=GOOD).status_code == 200


def test_unknown_paths_and_methods_are_json_errors(client):
    assert client.get("/v1/nothing").status_code == 404
    r = client.get("/v1/answer")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_model_health_docs_and_page(client, reader):
    info = client.get("/v1/model").json()
    assert info["backend"] == "torch"
    assert info["max_seq_len"] == reader.max_seq_len
    assert info["null_threshold"] == reader.null_threshold
    assert info["answerable_prior"] == reader.answerable_prior
    assert info["limits"]["max_context_chars"] == 5_000
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/v1/answer" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/static/app.js").status_code == 200


def test_concurrent_requests_share_one_model_call(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    contexts = [f"Lamp number {i} burned whale oil in {1840 + i}." for i in range(8)]
    out: dict = {}
    with serving(reader, batch_wait_ms=0) as client:
        first = hold_first_call(client, gate, out)
        batcher = client.app.state.batcher
        threads = [
            post_in_thread(client, "/v1/answer", {"question": f"q{i}?", "context": c}, out, str(i))
            for i, c in enumerate(contexts)
        ]
        wait_for(lambda: batcher.depth == 1 + len(contexts), "the requests to queue up")
        gate.release.set()
        for t in [first, *threads]:
            t.join()
    assert len(gate.readings) == 2
    assert sorted(gate.readings[1]) == sorted(f"q{i}?" for i in range(8))  # 8 requests, one Reading
    for i, c in enumerate(contexts):
        assert_same_prediction(out[str(i)].json(), reader.answer(f"q{i}?", c).to_dict())


def test_a_bad_question_does_not_fail_the_batch_it_shares(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    out: dict = {}
    with serving(reader) as client:
        first = hold_first_call(client, gate, out)
        bodies = {"ok1": GOOD, "bad": {**GOOD, "question": "who " * 200}, "ok2": {**GOOD, "top_k": 1}}
        threads = [post_in_thread(client, "/v1/answer", b, out, k) for k, b in bodies.items()]
        wait_for(lambda: client.app.state.batcher.depth == 4, "the requests to queue up")
        gate.release.set()
        for t in [first, *threads]:
            t.join()
    assert out["ok1"].status_code == out["ok2"].status_code == 200
    assert out["bad"].status_code == 422 and out["bad"].json()["field"] == "question"


def test_overload_is_503_with_retry_after_then_serving_resumes(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    out: dict = {}
    with serving(reader, max_queue=2) as client:
        first = hold_first_call(client, gate, out)
        queued = [post_in_thread(client, "/v1/answer", GOOD, out, k) for k in ("a",)]
        wait_for(lambda: client.app.state.batcher.depth == 2, "the queue to fill")  # first + a
        r = client.post("/v1/answer", json=GOOD)
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "overloaded"
        batch = client.post("/v1/answer/batch", json={"items": [GOOD]})
        assert batch.status_code == 503
        gate.release.set()
        for t in [first, *queued]:
            t.join()
        assert [out[k].status_code for k in ("first", "a")] == [200, 200]
        assert client.post("/v1/answer", json=GOOD).status_code == 200


def test_timeout_is_504_and_abandoned_questions_cost_no_model_time(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    out: dict = {}
    with serving(reader, timeout_s=0.5) as client:
        first = hold_first_call(client, gate, out)
        r = client.post("/v1/answer", json={**GOOD, "question": "Abandoned?"})
        assert r.status_code == 504 and r.json()["error"] == "timeout"
        gate.release.set()
        first.join()
        assert out["first"].status_code == 504
        wait_for(lambda: client.app.state.batcher.depth == 0, "the queue to drain")
        assert client.get("/healthz").json()["status"] == "ok"
    assert all("Abandoned?" not in reading for reading in gate.readings)
    assert gate.passes == [GOOD["question"]]  # the held pass; nothing after both callers gave up


def test_a_bug_is_a_500_and_the_server_keeps_serving(reader, monkeypatch):
    gate = Gate(reader, monkeypatch, fail=RuntimeError("boom"))
    gate.release.set()
    with serving(reader) as client:
        r = client.post("/v1/answer", json=GOOD)
        assert r.status_code == 500 and r.json()["error"] == "internal"
        assert client.post("/v1/answer", json=GOOD).status_code == 200


def test_access_log_is_json_with_request_id_and_latency(client, caplog):
    with caplog.at_level(logging.INFO, logger="spanqa.access"):
        r = client.post("/v1/answer", json=GOOD, headers={"x-request-id": "trace-42"})
        bad = client.post("/v1/answer", json={"context": "x"})
    assert r.headers["x-request-id"] == "trace-42"
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "spanqa.access"]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["trace-42"]["status"] == 200 and by_id["trace-42"]["path"] == "/v1/answer"
    assert by_id["trace-42"]["latency_ms"] >= 0
    assert by_id[bad.headers["x-request-id"]]["status"] == 422


def test_ask_over_a_document_index(reader, tmp_path):
    from spanqa.retrieval.index import DocumentIndex

    docs = {
        "lighthouse": CONTEXT + "\n\nThe tower is 38 metres tall.",
        "museum": "The keeper's cottage is a museum, open from April to October.",
    }
    with DocumentIndex(tmp_path / "docs.db") as index:
        index.add_texts(list(docs.items()))
        app = create_app(reader, ServiceSettings(timeout_s=LONG_WAIT), index=index)
        with TestClient(app) as client:
            r = client.post("/v1/ask", json={"question": "When is the museum open?", "top_k": 3})
            assert r.status_code == 200, r.text
            for a in r.json()["answers"]:
                assert index.text(a["doc"])[a["start"] : a["end"]] == a["text"]
            bad = client.post("/v1/ask", json={"question": " "})
            assert bad.status_code == 422 and bad.json()["field"] == "question"
    with serving(reader) as client:
        assert client.post("/v1/ask", json={"question": "When?"}).status_code == 404


def test_serve_refuses_a_busy_port_or_a_missing_index_in_one_line(tiny_bert_dir, tmp_path, capsys):
    import socket

    from spanqa.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert main(["serve", "--model", str(tiny_bert_dir), "--port", port]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    missing = str(tmp_path / "none.db")
    assert main(["serve", "--model", str(tiny_bert_dir), "--port", "0", "--db", missing]) == 2
    assert "no index at" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_bert_dir), "--timeout", "0"]) == 2
    assert "--timeout must be positive" in capsys.readouterr().err
