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
    timeout_s: float = 10.0  # per request, queueing included
    max_batch: int = 32  # questions per shared model call
    batch_wait_ms: float = 5.0  # how long a model call waits for more questions when not full
    max_queue: int = 256  # questions waiting; beyond that, 503
    batch_size: int = BATCH_SIZE  # windows per forward pass
    retry_after_s: int = 1
    max_upload_bytes: int = 10_000_000  # an uploaded PDF, HTML, DOCX or text file
    max_upload_pages: int = 500  # pages of an uploaded PDF
