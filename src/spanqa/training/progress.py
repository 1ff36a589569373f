"""Feedback and stopping for a training run: progress.json for `spanqa train --status`, and a clean stop
on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from spanqa.training.run_dir import CHECKPOINT_FORMAT, PROGRESS_FILE, write_json
from spanqa.training.schedule import Plan

PROGRESS_SECONDS = 10.0  # how often progress.json is rewritten
RECENT_SECONDS = 600.0  # the window of the "recent rate" the ETA is computed from


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Progress:
    """progress.json: where the run stands, for `spanqa train --status` (no model, no torch needed)."""

    def __init__(
        self,
        run: Path,
        plan: Plan,
        step: int,
        total: int,
        elapsed: float,
        device: str,
        choice: dict[str, Any],
        last_checkpoint: tuple[float, int] | None = None,
    ):
        self.run, self.plan, self.step, self.total = run, plan, step, total
        self.windows_done = plan.windows_before(step)
        self.windows_total = plan.windows_before(total)
        self.recent: deque[tuple[float, int]] = deque([(time.time(), self.windows_done)])
        self.loss: float | None = None
        self.elapsed = elapsed
        self.session_start = (time.time(), self.windows_done)
        self.last_checkpoint = last_checkpoint  # (time, step) of the checkpoint on disk
        self.extra = {"device": device, "precision": choice["precision"]}
        self.extra["precision_note"] = choice.get("reason")
        self.last_write = 0.0
        self.write("running", elapsed)

    def stepped(self, step: int, windows: int, loss: float, elapsed: float) -> None:
        self.step, self.loss, self.elapsed = step, loss, elapsed
        self.windows_done += windows
        now = time.time()
        self.recent.append((now, self.windows_done))
        while len(self.recent) > 2 and now - self.recent[1][0] > RECENT_SECONDS:
            self.recent.popleft()
        if now - self.last_write > PROGRESS_SECONDS:
            self.write("running", elapsed)

    def checkpointed(self, step: int) -> None:
        self.last_checkpoint = (time.time(), step)
        self.write("running", self.elapsed)

    def write(self, state: str, elapsed: float) -> None:
        now, self.elapsed = time.time(), elapsed
        (t0, w0), (t1, w1) = self.recent[0], self.recent[-1]
        s0, sw0 = self.session_start
        done = self.windows_done - sw0
        session_rate = done / (now - s0) if now > s0 and done > 0 else None
        write_json(
            self.run / PROGRESS_FILE,
            {
                "format": CHECKPOINT_FORMAT,
                "state": state,
                "pid": os.getpid(),
                "step": self.step,
                "total_steps": self.total,
                "windows_done": self.windows_done,
                "windows_total": self.windows_total,
                "loss": self.loss,
                "elapsed_s": round(elapsed, 1),
                "windows_per_s": session_rate,
                "recent_windows_per_s": (w1 - w0) / (t1 - t0) if t1 > t0 else None,
                "updated_at": now,
                "last_checkpoint_at": self.last_checkpoint[0] if self.last_checkpoint else None,
                "last_checkpoint_step": self.last_checkpoint[1] if self.last_checkpoint else None,
                **self.extra,
            },
        )
        self.last_write = now


class StopOnSignal:
    """SIGINT and SIGTERM ask the loop to checkpoint after the step in progress and stop; a second signal
    stops at once (the last checkpoint stays intact: checkpoints are replaced atomically)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
