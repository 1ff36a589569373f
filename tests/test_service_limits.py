"""One request must not stall the service for everyone: its work is bounded before any forward pass, it is
dropped at its next forward pass when its caller gives up, small requests run between a big one's passes,
and shutting down fails what is in flight at once. Counts of forward passes, not timings."""

from __future__ import annotations

import json
import signal
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spanqa import Reader
from test_service import GOOD, LONG_WAIT, Gate, post_in_thread, serving, wait_for

# 40 one-window texts (tiny model): several forward passes
MANY = {"question": "Which lamp burned oil?", "contexts": [f"Lamp number {i} burned oil." for i in range(40)]}


def passes_of_many(reader: Reader) -> int:
    from spanqa.service.settings import ServiceSettings

    reading = reader.reading([(MANY["question"], MANY["contexts"])], batch_size=ServiceSettings().batch_size)
    return len(reading.batches)


@pytest.fixture(scope="module")
def reader(tiny_bert_dir) -> Reader:
    return Reader.load(tiny_bert_dir)


def test_ten_thousand_texts_are_refused_before_any_work(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    gate.release.set()
    with serving(reader) as client:
        body = {"question": "Who built it?", "contexts": ["three word string"] * 10_000}
        r = client.post("/v1/answer", json=body)
        assert r.status_code == 422 and r.json()["field"] == "contexts"
        assert "at most 64" in r.json()["message"]
        items = [{"question": "Who?", "contexts": ["a tiny text"] * 300}] * 64
        r = client.post("/v1/answer/batch", json={"items": items})
        assert r.status_code == 422 and r.json()["field"] == "items"
    assert gate.readings == [] and gate.passes == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/answer", MANY, "contexts"),
        ("/v1/answer", {"question": "Which lamp?", "context": "lamp oil tower " * 100}, "context"),
        ("/v1/answer/batch", {"items": [GOOD, {**GOOD, "top_k": 2}, *[GOOD] * 3]}, "items"),
    ],
)
def test_more_windows_than_the_limit_is_422_naming_it_with_no_pass(reader, monkeypatch, path, body, field):
    gate = Gate(reader, monkeypatch)
    gate.release.set()
    with serving(reader, max_windows=3) as client:
        r = client.post(path, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field
        assert "at most 3" in r.json()["message"] and "max_windows" in r.json()["message"]
        assert gate.passes == []
        assert client.post("/v1/answer", json=GOOD).status_code == 200  # within the limit: served
        assert client.app.state.batcher.depth == 0


def test_ask_is_bounded_too(reader, monkeypatch, tmp_path):
    from fastapi.testclient import TestClient

    from spanqa.retrieval.index import DocumentIndex
    from spanqa.service.app import ServiceSettings, create_app

    gate = Gate(reader, monkeypatch)
    gate.release.set()
    with DocumentIndex(tmp_path / "docs.db") as index:
        index.add_texts([(f"doc{i}", "The lamp burned oil in the tower. " * 60) for i in range(4)])
        app = create_app(reader, ServiceSettings(timeout_s=LONG_WAIT, max_windows=3), index=index)
        with TestClient(app) as client:
            r = client.post("/v1/ask", json={"question": "What did the lamp burn?", "passages": 20})
            assert r.status_code == 422 and r.json()["field"] == "passages", r.text
            assert "max_windows" in r.json()["message"]
            assert gate.passes == []
            assert client.post(
                "/v1/ask", json={"question": "What did the lamp burn?", "passages": 1}
            ).is_success


def test_a_timed_out_request_stops_at_its_next_forward_pass(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    with serving(reader, timeout_s=0.5) as client:
        batcher = client.app.state.batcher
        out: dict = {}
        big = post_in_thread(client, "/v1/answer", MANY, out, "big")
        wait_for(lambda: len(gate.passes) == 1, "the big request's first forward pass")
        big.join()  # the caller gives up while its first pass is held
        assert out["big"].status_code == 504
        gate.release.set()
        wait_for(lambda: batcher.depth == 0, "the big request to be dropped")
        assert passes_of_many(reader) >= 3
        assert gate.passes == [MANY["question"]]  # 1 of its passes ran: none after the caller left
        assert batcher.dropped == 1
        assert client.post("/v1/answer", json=GOOD).status_code == 200


def test_a_small_request_runs_between_the_passes_of_a_big_one(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    out: dict = {}
    with serving(reader) as client:
        big = post_in_thread(client, "/v1/answer", MANY, out, "big")
        wait_for(lambda: len(gate.passes) == 1, "the big request's first forward pass")
        small = post_in_thread(client, "/v1/answer", GOOD, out, "small")
        wait_for(lambda: client.app.state.batcher.depth == 2, "the small request to queue")
        gate.release.set()
        big.join()
        small.join()
    assert out["big"].status_code == out["small"].status_code == 200
    big_q, small_q = MANY["question"], GOOD["question"]
    assert gate.passes.count(big_q) == passes_of_many(reader) >= 3
    assert gate.passes[:2] == [big_q, small_q]  # served after one pass of the big one, not after all


def test_the_model_is_shared_between_requests_not_readings(reader, monkeypatch):
    """Four callers' questions sharing one Reading get four shares: its passes run before the big
    request's next one (shared equally between Readings, they would alternate with it, pass for pass)."""
    from spanqa.service.settings import ServiceSettings

    sentence = "The lamp in the tower burned whale oil every night. "
    big_body = {"question": "Which lamp?", "contexts": [sentence * 7] * 12}  # 12 full windows (tiny model)
    smalls = [{"question": f"What did lamp {i} burn?", "context": sentence * 14} for i in range(4)]
    batch = ServiceSettings().batch_size
    shared = reader.reading([(b["question"], b["context"]) for b in smalls], batch_size=batch)
    big_reading = reader.reading([(big_body["question"], big_body["contexts"])], batch_size=batch)
    n = len(shared.batches)
    assert n >= 2 and len(big_reading.batches) >= 3
    assert shared.next_cost() <= big_reading.next_cost()  # a pass of each costs about the same
    gate = Gate(reader, monkeypatch)
    out: dict = {}
    with serving(reader) as client:
        big = post_in_thread(client, "/v1/answer", big_body, out, "big")
        wait_for(lambda: len(gate.passes) == 1, "the big request's first forward pass")
        threads = [post_in_thread(client, "/v1/answer", b, out, str(i)) for i, b in enumerate(smalls)]
        wait_for(lambda: client.app.state.batcher.depth == 5, "the small requests to queue")
        gate.release.set()
        for t in [big, *threads]:
            t.join()
    assert all(out[k].status_code == 200 for k in ["big", "0", "1", "2", "3"])
    assert len(gate.readings) == 2  # the big one, and one Reading shared by the four small ones
    assert gate.passes[: 2 + n] == ["Which lamp?"] + [gate.readings[1][0]] * n + ["Which lamp?"]


def test_shutdown_fails_requests_in_flight_and_stops_after_the_pass_in_hand(reader, monkeypatch):
    gate = Gate(reader, monkeypatch)
    out: dict = {}
    with serving(reader) as client:
        batcher = client.app.state.batcher
        big = post_in_thread(client, "/v1/answer", MANY, out, "big")
        wait_for(lambda: len(gate.passes) == 1, "the big request's first forward pass")
        queued = post_in_thread(client, "/v1/answer", GOOD, out, "queued")
        wait_for(lambda: batcher.depth == 2, "a second request to queue")
        batcher.shutdown()  # what SIGTERM does first (cli/serve.py)
        queued.join()
        big.join()  # answered at once, while its forward pass is still held
        assert out["queued"].status_code == out["big"].status_code == 503
        gate.release.set()
        batcher._thread.join(LONG_WAIT)
        assert not batcher._thread.is_alive()
    assert gate.passes == [MANY["question"]]


def test_sigterm_answers_the_request_in_flight_and_exits(tiny_bert_dir):
    from spanqa.cli.serve import child_server

    unbounded = ["--max-windows", "100000", "--max-texts", "100000"]
    with child_server(["--model", str(tiny_bert_dir), *unbounded]) as url:
        heavy = {"question": "Which lamp?", "contexts": [f"Lamp {i} burned oil." for i in range(5_000)]}
        out: dict = {}

        def send() -> None:
            try:
                out["r"] = httpx.post(url + "/v1/answer", json=heavy, timeout=LONG_WAIT)
            except httpx.HTTPError as e:
                out["r"] = e

        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: _metric(httpx.get(url + "/metrics").text, "spanqa_model_passes_total") > 0, "work")
        url.process.send_signal(signal.SIGTERM)
        assert url.process.wait(LONG_WAIT) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        sender.join()
    assert isinstance(out["r"], httpx.Response) and out["r"].status_code == 503, out["r"]
    assert "shutting down" in out["r"].json()["message"]


def test_metrics_count_requests_windows_and_texts(reader):
    with serving(reader) as client:
        long_text = "lamp oil tower " * 100  # 4 windows (tiny model)
        assert client.post("/v1/answer", json={"question": "Which?", "context": long_text}).status_code == 200
        assert client.post("/v1/answer", json=GOOD).status_code == 200
        assert client.post("/v1/answer", json={"question": " ", "context": "x"}).status_code == 422
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    ok = {"method": "POST", "path": "/v1/answer", "status": "200"}
    assert _metric(text, "spanqa_http_requests_total", ok) == 2
    assert _metric(text, "spanqa_http_requests_total", {**ok, "status": "422"}) == 1
    assert _metric(text, "spanqa_http_request_duration_seconds_count", {"path": "/v1/answer"}) == 3
    assert _metric(text, "spanqa_windows_per_request_count") == 2
    assert _metric(text, "spanqa_windows_per_request_sum") == 5  # 4 + 1
    assert _metric(text, "spanqa_contexts_total") == 2
    assert _metric(text, "spanqa_contexts_multi_window_total") == 1
    assert _metric(text, "spanqa_context_tokens_count") == 2
    answered = sum(_metric(text, "spanqa_questions_total", {"no_answer": v}) for v in ("true", "false"))
    assert answered == 2
    assert _metric(text, "spanqa_queue_depth") == 0
    assert _metric(text, "spanqa_model_passes_total") >= 2


def _metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    raise AssertionError(f"no sample {name} {json.dumps(labels)} in /metrics")
