"""The HTTP service's limits and batching knobs; a module of its own so the CLI can show their defaults
without importing the web stack."""

from __future__ import annotations

from dataclasses import dataclass

from spanqa.reading.bucketing import BATCH_SIZE


@dataclass(frozen=True)
class ServiceSettings:
    max_body_bytes: int = 2_000_000
    max_context_chars: int = 200_000  # all texts of one question together
    max_question_chars: int = 2_000
    max_batch_items: int = 64  # questions in one /v1/answer/batch request
    max_texts: int = 64  # texts (contexts) in one request, all its questions together
    # Model windows one request may take (its questions together, after retrieval narrowed long texts):
    # the bound on the work of one request. 64 windows are 16 forward passes of batch_size 4.
    max_windows: int = 64
    timeout_s: float = 10.0  # per request, queueing included
    max_batch: int = 32  # questions per shared model call
    batch_wait_ms: float = 5.0  # how long a model call waits for more questions when not full
    max_queue: int = 256  # questions waiting; beyond that, 503
    # Windows per forward pass: half the reader's default, so that a question arriving behind a heavy request
    # waits for 4 windows, not 8, per pass of its own; 4 is within 2% of 8 for torch, the best for onnx-int8,
    # 7% below 8 for onnx fp32 (benchmarks/results/batch_size.md).
    batch_size: int = BATCH_SIZE // 2
    retry_after_s: int = 1
    max_upload_bytes: int = 10_000_000  # an uploaded PDF, HTML, DOCX or text file
    max_upload_pages: int = 500  # pages of an uploaded PDF
