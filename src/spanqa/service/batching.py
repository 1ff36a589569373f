"""Micro-batching: concurrent requests share model calls, and one worker thread owns the model.

Requests queue up while the model is busy; the worker takes everything waiting (up to `max_batch`
questions), waits at most `max_wait_ms` for stragglers when the batch is not full, and answers the lot with
one `Reader.answer_batch` call per set of reading options. The queue is bounded: when it is full, callers
get `Overloaded` at once (the service answers 503) instead of waiting behind an ever longer line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from spanqa.errors import InputError
from spanqa.prediction import Prediction
from spanqa.reading.bucketing import BATCH_SIZE
from spanqa.reading.reader import Item, Reader

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full (or the batcher is stopping): try again later."""


class ReadOptions(NamedTuple):
    """Per-request reading options; requests with equal options share one answer_batch call."""

    top_k: int = 1
    max_answer_len: int = 30
    null_threshold: float | None = None
    answerable_prior: float | None = None


@dataclass(eq=False)
class _Job:
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    item: Item | None = None  # a question to batch with others ...
    options: ReadOptions = field(default_factory=ReadOptions)
    call: Callable[[Reader], Any] | None = None  # ... or work run alone on the worker thread
    abandoned: bool = False  # the caller stopped waiting (timeout): skip it if not started


class MicroBatcher:
    """Answers questions from many coroutines with shared model calls on one worker thread."""

    def __init__(
        self,
        reader: Reader,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        batch_size: int = BATCH_SIZE,
    ):
        if max_batch < 1 or max_queue < 1 or batch_size < 1 or max_wait_ms < 0:
            raise InputError("max_batch, max_queue and batch_size must be >= 1 and max_wait_ms >= 0")
        self.reader = reader
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.batch_size = batch_size
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches = 0  # model calls made, and questions answered in them: what the batching achieved
        self.questions = 0

    # ---- the event loop's side ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="spanqa-model", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker finish the batch in hand; whatever is still queued is failed as Overloaded."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in left:
            _settle(job, Overloaded("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    @property
    def depth(self) -> int:
        """Jobs waiting for the worker (not counting the batch it is running)."""
        return len(self._queue)

    async def answer(
        self, requests: Sequence[tuple[Item, ReadOptions]], timeout: float | None = None
    ) -> list[Prediction | BaseException]:
        """One result per request, in order: a Prediction, or the InputError that request raised.

        Raises Overloaded when the queue has no room for all of them, TimeoutError after `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        jobs = [_Job(loop.create_future(), loop, item=item, options=opts) for item, opts in requests]
        return await self._wait(jobs, timeout)

    async def call(self, fn: Callable[[Reader], Any], timeout: float | None = None) -> Any:
        """Run `fn(reader)` on the worker thread, between batches (the model is never used by two threads)."""
        loop = asyncio.get_running_loop()
        (result,) = await self._wait([_Job(loop.create_future(), loop, call=fn)], timeout)
        if isinstance(result, BaseException):
            raise result
        return result

    async def _wait(self, jobs: list[_Job], timeout: float | None) -> list[Any]:
        with self._cond:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if len(self._queue) + len(jobs) > self.max_queue:
                raise Overloaded(f"{len(self._queue)} questions are waiting already")
            self._queue.extend(jobs)
            self._cond.notify()
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(j.future for j in jobs), return_exceptions=True), timeout
            )
        except (TimeoutError, asyncio.CancelledError):
            for job in jobs:  # a client that gave up must not cost model time
                job.abandoned = True
            raise

    # ---- the worker thread's side ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if not jobs:  # every job taken had been abandoned while it waited
                continue
            try:
                if jobs[0].call is not None:
                    self._run_call(jobs[0])
                else:
                    self._run_batch(jobs)
            except BaseException as e:  # a bug, not the caller's: fail these jobs and keep serving
                log.exception("model worker failed on a batch of %d", len(jobs))
                for job in jobs:
                    _settle(job, e)

    def _take(self) -> list[_Job] | None:
        """The next batch: a call job alone, or up to max_batch questions (waiting briefly to fill it).

        None when the batcher is stopping.
        """
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                self._drop_abandoned()
                if self._queue:
                    break
            if self._queue[0].call is not None:
                return [self._queue.popleft()]
            deadline = time.monotonic() + self.max_wait
            while self._batchable() < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = []
            while self._queue and len(batch) < self.max_batch and self._queue[0].call is None:
                job = self._queue.popleft()
                if not job.abandoned:
                    batch.append(job)
            return batch

    def _batchable(self) -> int:
        n = 0
        for job in self._queue:
            if job.call is not None:
                break
            n += 1
        return n

    def _drop_abandoned(self) -> None:
        while self._queue and self._queue[0].abandoned:
            self._queue.popleft()

    def _run_call(self, job: _Job) -> None:
        try:
            result: Any = job.call(self.reader)  # type: ignore[misc]
        except InputError as e:
            result = e
        _settle(job, result)

    def _run_batch(self, jobs: list[_Job]) -> None:
        groups: dict[ReadOptions, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.options, []).append(job)
        for options, group in groups.items():
            self._read(group, options)

    def _read(self, group: list[_Job], options: ReadOptions) -> None:
        try:
            preds: list[Any] = self.reader.answer_batch(
                [j.item for j in group], batch_size=self.batch_size, **options._asdict()
            )
        except InputError as e:
            if len(group) == 1:
                _settle(group[0], e)
                return
            for job in group:  # one bad question must not fail the others batched with it
                self._read([job], options)
            return
        self.batches += 1
        self.questions += len(group)
        for job, pred in zip(group, preds):
            _settle(job, pred)


def _settle(job: _Job, result: Any) -> None:
    """Hand a result to the job's event loop (futures are not thread-safe)."""

    def deliver() -> None:
        if job.future.done():
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(deliver)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
