"""Feedback during long work: a status line, then a progress bar, for anything that takes over a second.

Quick commands print nothing extra: the status line appears only after STATUS_DELAY seconds, and both it and
the bar are erased when the work is done, so the answer stands alone. They are drawn only on a terminal;
piped or redirected stderr gets no status lines (scripts read one-line errors from it), while `predict` and
`evaluate` keep their question bars there (spanqa.evaluation.journal).
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

STATUS_DELAY = 0.5  # seconds of silence before saying what is going on: well within the 2 s a user waits


def on_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class Activity:
    """What one step of a command is doing, as `with Activity("loading the model"): ...`.

    Called as `activity(done, total)` (Reader.answer_batch's `progress`), it turns into a bar of `unit`s.
    """

    def __init__(
        self, message: str, unit: str = "win", stream: TextIO | None = None, delay: float | None = None
    ):
        """`delay`: seconds before the status line (default STATUS_DELAY; 0 for steps never quick)."""
        self.message = message
        self.delay = delay
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = on_terminal(self.stream)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._shown = False
        self._bar: Any = None
        self._started = time.monotonic()

    def __enter__(self) -> Activity:
        self._started = time.monotonic()
        if self.enabled:
            wait = STATUS_DELAY if self.delay is None else self.delay
            self._timer = threading.Timer(wait, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _show(self) -> None:
        with self._lock:
            if self._timer is not None and self._bar is None:
                self.stream.write(f"spanqa: {self.message}…")
                self.stream.flush()
                self._shown = True

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._bar is None:
                from tqdm import tqdm

                waited = time.monotonic() - self._started
                if self._shown:  # the bar takes the status line's place
                    self.stream.write("\r\x1b[K")
                    self._shown = False
                self._bar = tqdm(
                    total=total,
                    unit=self.unit,
                    desc=self.message,
                    file=self.stream,
                    leave=False,
                    delay=max(0.0, (STATUS_DELAY if self.delay is None else self.delay) - waited),
                    mininterval=0.2,
                )
            self._bar.update(done - self._bar.n)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            if self._bar is not None:
                self._bar.close()
            if self._shown:
                self.stream.write("\r\x1b[K")  # erase the status line: what follows stands alone
                self.stream.flush()
                self._shown = False
