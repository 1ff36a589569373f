"""`/metrics` in Prometheus' text format: what the service does, and what its users' texts look like.

Each app has its own registry (several apps in one process, as in tests, do not mix their counts). Shares
("no answer", texts needing more than one window) are exposed as counters to divide in PromQL, the
Prometheus way: e.g. rate(spanqa_questions_total{no_answer="true"}[1h]) / rate(spanqa_questions_total[1h]).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from spanqa.prediction import Prediction
from spanqa.reading.steps import Reading
from spanqa.service.batching import MicroBatcher

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_WINDOWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKENS = (32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)


class ServiceMetrics:
    def __init__(self, batcher: MicroBatcher):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "spanqa_http_requests",
            "HTTP requests answered, by route and status",
            ["method", "path", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "spanqa_http_request_duration_seconds",
            "Time to answer an HTTP request, queueing included",
            ["path"],
            buckets=_SECONDS,
            registry=r,
        )
        depth = Gauge("spanqa_queue_depth", "Questions admitted and not yet answered", registry=r)
        depth.set_function(lambda: batcher.depth)
        self.windows = Histogram(
            "spanqa_windows_per_request",
            "Model windows read for one answering request",
            buckets=_WINDOWS,
            registry=r,
        )
        self.tokens = Histogram(
            "spanqa_context_tokens",
            "Tokens of each text read (after retrieval narrowed long ones)",
            buckets=_TOKENS,
            registry=r,
        )
        self.questions = Counter(
            "spanqa_questions",
            "Questions answered, by whether the answer was 'no answer'",
            ["no_answer"],
            registry=r,
        )
        for no_answer in ("true", "false"):  # both series exist from the start, so a share is never absent
            self.questions.labels(no_answer)
        self.texts = Counter("spanqa_contexts", "Texts read", registry=r)
        self.long_texts = Counter(
            "spanqa_contexts_multi_window", "Texts read that needed more than one window", registry=r
        )
        r.register(_BatcherCounts(batcher))

    def observe_request(self, method: str, path: str, status: int, began: float) -> None:
        """EdgeMiddleware's hook: one call per HTTP request."""
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(path).observe(time.perf_counter() - began)

    def observe_reading(self, reading: Reading, predictions: list[Prediction]) -> None:
        """The batcher's hook (on its worker thread): once per finished Reading."""
        for p in predictions:
            self.questions.labels("true" if p.no_answer else "false").inc()
        for tokens, windows in text_sizes(reading):
            self.texts.inc()
            self.long_texts.inc(windows > 1)
            self.tokens.observe(tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _BatcherCounts(Collector):
    """The batcher's own counters, read when scraped."""

    def __init__(self, batcher: MicroBatcher):
        self.batcher = batcher

    def collect(self) -> Iterator[CounterMetricFamily]:
        b = self.batcher
        for name, doc, value in (
            ("spanqa_model_passes", "Forward passes run", b.steps),
            ("spanqa_readings", "Readings made (questions that shared forward passes count once)", b.batches),
            ("spanqa_requests_dropped", "Requests dropped because their caller gave up", b.dropped),
        ):
            yield CounterMetricFamily(name, doc, value=value)


def text_sizes(reading: Reading) -> list[tuple[int, int]]:
    """(context tokens, windows) of every text a Reading read."""
    windows = reading.windows
    per_text_windows = np.bincount(windows.item, minlength=len(reading.reads))
    starts: list[set[int]] = [set() for _ in reading.reads]
    for w, r in enumerate(windows.item):  # overlapping windows see some tokens twice: count them once
        first = windows.offsets[w][:, 0]
        starts[r].update(first[first >= 0].tolist())
    return [(len(s), int(n)) for s, n in zip(starts, per_text_windows)]
