"""The units of work the micro-batcher (batching.py) schedules: a caller's request, and a Task (one Reading
under way, or a call) serving one or more requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from spanqa.reading.reader import Item, Reader, Reading

# A request of one question about one text of at most this many characters may share a Reading with
# others: about two windows of text, so sharing never makes a small question wait on a long one.
SHARED_CHARS = 2_000


class ReadOptions(NamedTuple):
    """Per-request reading options; requests with equal options may share a Reading."""

    top_k: int = 1
    max_answer_len: int = 30
    null_threshold: float | None = None
    answerable_prior: float | None = None


@dataclass
class Budget:
    """Model windows left to one caller's request, shared by its parts (one per set of reading options)."""

    left: int
    exceeded: bool = False  # a part was refused: the others are dropped unread


@dataclass(eq=False)
class WorkRequest:
    """The questions of one caller's request, answered together (or failed together when abandoned)."""

    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    items: list[Item] = field(default_factory=list)
    options: ReadOptions = field(default_factory=ReadOptions)
    call: Callable[[Reader], Any] | None = None  # ... or work run alone on the worker thread
    abandoned: bool = False  # the caller stopped waiting: drop it before its next forward pass
    windows: int = 0  # model windows its questions took
    budget: Budget | None = None
    done: bool = False

    @property
    def size(self) -> int:
        return max(1, len(self.items))

    @property
    def shareable(self) -> bool:
        if self.call is not None or len(self.items) != 1:
            return False
        context = self.items[0][1]
        return isinstance(context, str) and len(context) <= SHARED_CHARS


@dataclass(eq=False)
class Task:
    """A Reading in progress and the requests whose questions it reads (in order), or a call request."""

    requests: list[WorkRequest]
    reading: Reading | None = None
    # Tokens of model time so far per request it serves: the fair-share clock. A Reading shared by 8 callers'
    # questions advances 8 times slower than one serving a single caller: the model is shared between
    # callers, not between Readings.
    served: float = 0.0

    @property
    def abandoned(self) -> bool:
        return all(r.abandoned or (r.budget is not None and r.budget.exceeded) for r in self.requests)


def priority(task: Task) -> tuple[float, int]:
    """Weighted fair queuing: the Reading whose next pass would finish first on the fair-share clock; between
    equals, the one nearest its end."""
    if task.reading is None:
        return task.served, 0
    finish = task.served + task.reading.next_cost() / len(task.requests)
    return finish, len(task.reading.batches) - task.reading.done


def settle(request: WorkRequest, result: Any) -> None:
    """Hand a result to the request's event loop (futures are not thread-safe)."""

    def deliver() -> None:
        if request.future.done():
            return
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)

    try:
        request.loop.call_soon_threadsafe(deliver)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
