"""Micro-batching with fair sharing: concurrent requests share model calls, one worker thread owns the model,
and no request can hold the model for long.

Each request's questions become a `Reading` (reader.py): windowed at once, then read one forward pass at
a time. Small requests (one question about one short text) that wait together share one Reading, so
concurrent questions still share forward passes; any other request reads alone. Between forward passes
the worker picks the active Reading that has had the fewest tokens of model time per request it serves
(weighted fair queuing: a Reading starts at the current minimum), so a small question arriving behind a
heavy request waits for one of the heavy request's forward passes, not for all of them.

The work of one request is bounded (`max_windows`: more windows than that is refused before any forward
pass), a request whose caller gave up (timeout, disconnect) is dropped before its next forward pass, and
`shutdown()` fails everything in flight at once. Questions admitted (queued or being read) are bounded by
`max_queue`: beyond that callers get `Overloaded` at once (the service answers 503).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from spanqa.errors import InputError
from spanqa.prediction import Prediction
from spanqa.reading.bucketing import BATCH_SIZE
from spanqa.reading.reader import Item, Reader
from spanqa.reading.steps import Reading
from spanqa.service.work import Budget, ReadOptions, Task, WorkRequest, priority, settle

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full (or the batcher is stopping): try again later."""


class TooMuchWork(Exception):
    """The request needs more model windows than the server reads for one request."""


def too_much_work(windows: int, limit: int) -> str:
    return (
        f"reading it takes {windows} model windows; this server reads at most {limit} "
        "for one request (max_windows): send fewer or shorter texts"
    )


class MicroBatcher:
    """Answers questions from many coroutines with shared, interleaved model calls on one worker thread."""

    def __init__(
        self,
        reader: Reader,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        batch_size: int = BATCH_SIZE,
        max_windows: int = 256,
        on_reading: Callable[[Reading, list[Prediction]], None] | None = None,
    ):
        if min(max_batch, max_queue, batch_size, max_windows) < 1 or max_wait_ms < 0:
            raise InputError("max_batch, max_queue, batch_size, max_windows must be >= 1, max_wait_ms >= 0")
        self.reader = reader
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.max_windows = max_windows
        self.on_reading = on_reading  # called with every finished Reading (metrics)
        self._queue: deque[WorkRequest] = deque()
        self._tasks: list[Task] = []  # Readings under way, touched by the worker thread only
        self._admitted = 0  # questions queued or being read, not yet answered or dropped
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches = 0  # Readings made, and questions read in them: what the batching achieved
        self.questions = 0
        self.steps = 0  # forward passes run
        self.dropped = 0  # requests dropped unread or part-read because their caller gave up

    # ---- the event loop's side ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="spanqa-model", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop taking work and fail everything in flight as Overloaded, at once; the worker stops after the
        forward pass in hand. Safe to call from any thread, or twice."""
        with self._cond:
            self._closed = True
            left = list(self._queue) + [r for t in list(self._tasks) for r in t.requests]
            self._queue.clear()
            self._cond.notify_all()
        for request in left:  # (the worker may settle one too: the first answer wins)
            settle(request, Overloaded("the server is shutting down"))

    def stop(self, timeout: float = 1.0) -> None:
        """shutdown(), then wait up to `timeout` s for the forward pass in hand (the thread is a daemon)."""
        self.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    @property
    def depth(self) -> int:
        """Questions admitted and not yet answered: queued, or in a Reading under way."""
        return self._admitted

    async def answer(
        self, requests: Sequence[tuple[Item, ReadOptions]], timeout: float | None = None
    ) -> tuple[list[Prediction | BaseException], int]:
        """One result per question, in order (a Prediction, or the InputError that question raised), and
        the model windows they took together.

        Raises Overloaded when there is no room for them, TooMuchWork when they need more than
        max_windows windows, TimeoutError after `timeout` seconds (their remaining work is dropped).
        """
        loop = asyncio.get_running_loop()
        groups: dict[ReadOptions, list[int]] = {}  # one Reading reads with one set of options
        for i, (_, options) in enumerate(requests):
            groups.setdefault(options, []).append(i)
        budget = Budget(self.max_windows)
        parts = [
            WorkRequest(loop.create_future(), loop, [requests[i][0] for i in idx], options, budget=budget)
            for options, idx in groups.items()
        ]
        outcomes = await self._wait(parts, timeout)
        results: list[Any] = [None] * len(requests)
        for idx, outcome in zip(groups.values(), outcomes):
            for i, result in zip(idx, outcome):
                results[i] = result
        return results, sum(p.windows for p in parts)

    async def call(self, fn: Callable[[Reader], Any], timeout: float | None = None) -> Any:
        """Run `fn(reader)` on the worker thread, between forward passes (the model is never used by two
        threads). It runs whole: keep its work bounded."""
        loop = asyncio.get_running_loop()
        (result,) = await self._wait([WorkRequest(loop.create_future(), loop, call=fn)], timeout)
        if isinstance(result, BaseException):
            raise result
        return result

    async def _wait(self, requests: list[WorkRequest], timeout: float | None) -> list[Any]:
        size = sum(r.size for r in requests)
        with self._cond:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if self._admitted + size > self.max_queue:
                raise Overloaded(f"{self._admitted} questions are waiting already")
            self._admitted += size
            self._queue.extend(requests)
            self._cond.notify()
        try:
            return await asyncio.wait_for(asyncio.gather(*(r.future for r in requests)), timeout)
        except BaseException:  # timeout, disconnect, or a part failed: what is left must cost no model time
            with self._cond:
                for request in requests:
                    request.abandoned = True
                self._cond.notify()
            raise

    # ---- the worker thread's side ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            new = self._take()
            if new is None:
                self._fail_tasks(Overloaded("the server is shutting down"))
                return
            try:
                self._tasks += self._make_tasks(new)
                self._drop_abandoned()
                if self._tasks:
                    self._step(min(self._tasks, key=priority))
            except BaseException as e:  # a bug, not the caller's: fail the work in hand, keep serving
                log.exception("model worker failed")
                self._fail_tasks(e)
                for request in new:
                    self._finish(request, e)

    def _take(self) -> list[WorkRequest] | None:
        """Requests that arrived since the last step; blocks only while there is nothing to do.

        When idle and only small questions wait, waits up to max_wait for more to share their Reading.
        None when the batcher is stopping.
        """
        with self._cond:
            while not self._queue and not self._tasks and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            if not self._tasks and self._queue and all(r.shareable for r in self._queue):
                deadline = time.monotonic() + self.max_wait
                while len(self._queue) < self.max_batch and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed:
                    return None
            new = list(self._queue)
            self._queue.clear()
        for request in new:
            if request.abandoned:
                self._release(request, dropped=True)
        return [r for r in new if not r.abandoned]

    def _make_tasks(self, requests: list[WorkRequest]) -> list[Task]:
        tasks: list[Task] = []
        shared: dict[ReadOptions, list[WorkRequest]] = {}
        for request in requests:
            if request.call is not None:
                tasks.append(Task([request]))
            elif request.shareable:
                group = shared.setdefault(request.options, [])
                group.append(request)
                if len(group) == self.max_batch:
                    tasks += self._start_reading(shared.pop(request.options))
            else:
                tasks += self._start_reading([request])
        for group in shared.values():
            tasks += self._start_reading(group)
        clock = min((t.served for t in self._tasks), default=0.0)
        for task in tasks:
            task.served = clock  # newcomers start level with the least served, never with a backlog
        return tasks

    def _start_reading(self, requests: list[WorkRequest]) -> list[Task]:
        """A Reading of these requests' questions, or none when they fail (each fails alone)."""
        items = [item for r in requests for item in r.items]
        try:
            reading = self.reader.reading(items, batch_size=self.batch_size, **requests[0].options._asdict())
        except InputError as e:
            if len(requests) > 1:  # one bad question must not fail the others it would share a Reading with
                return [t for r in requests for t in self._start_reading([r])]
            if len(items) > 1:  # which question it was: the service names the field by item
                return self._fail_items(requests[0])
            self._finish(requests[0], [e])
            return []
        per_item = np.bincount(
            [reading.reads[r][0] for r in reading.windows.item], minlength=len(items)
        ).tolist()
        start, keep = 0, []
        for request in requests:
            request.windows = sum(per_item[start : start + len(request.items)])
            start += len(request.items)
            budget = request.budget or Budget(self.max_windows)
            if request.windows > budget.left:
                windows = self.max_windows - budget.left + request.windows
                budget.exceeded = True
                self._finish(request, TooMuchWork(too_much_work(windows, self.max_windows)))
            else:
                budget.left -= request.windows
                keep.append(request)
        if len(keep) < len(requests):  # (rare: shared requests are small) read the others without it
            for request in keep:
                if request.budget is not None:
                    request.budget.left += request.windows
            return self._start_reading(keep) if keep else []
        self.batches += 1
        self.questions += len(items)
        return [Task(requests, reading)]

    def _fail_items(self, request: WorkRequest) -> list[Task]:
        """Find the questions of a request that the reader refuses: the first one found fails it all."""
        for item in request.items:
            try:
                self.reader.reading([item], batch_size=self.batch_size, **request.options._asdict())
            except InputError as e:
                self._finish(request, [e if x is item else None for x in request.items])
                return []
        raise RuntimeError("a request failed as a whole but none of its questions fails alone")

    def _step(self, task: Task) -> None:
        if task.reading is None:  # a call: runs whole
            (request,) = task.requests
            self._tasks.remove(task)
            try:
                result: Any = request.call(self.reader)  # type: ignore[misc]
            except (InputError, TooMuchWork) as e:  # the caller's, not a bug
                result = e
            self._finish(request, result)
            return
        task.served += task.reading.next_cost() / len(task.requests)
        task.reading.step()
        self.steps += 1
        if task.reading.next_cost() == 0:
            self._tasks.remove(task)
            self._deliver(task)

    def _deliver(self, task: Task) -> None:
        reading = task.reading
        assert reading is not None
        predictions = reading.predictions()
        if self.on_reading is not None:
            self.on_reading(reading, predictions)
        start = 0
        for request in task.requests:
            n = len(request.items)
            self._finish(request, predictions[start : start + n])
            start += n

    def _drop_abandoned(self) -> None:
        for task in [t for t in self._tasks if t.abandoned]:
            self._tasks.remove(task)
            for request in task.requests:
                self._release(request, dropped=True)

    def _fail_tasks(self, error: BaseException) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            for request in task.requests:
                self._finish(request, error)

    def _finish(self, request: WorkRequest, result: Any) -> None:
        self._release(request)
        settle(request, result)

    def _release(self, request: WorkRequest, dropped: bool = False) -> None:
        if request.done:
            return
        request.done = True
        with self._cond:
            self._admitted -= request.size
            self.dropped += dropped
