"""The backend interface. A backend runs the model: padded numpy arrays in, start and end logits out.

Every backend has the same small interface (`name`, `input_names`, `run`), so the reader, training
evaluation and benchmarks never care which one is behind it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# onnx-int8 re-reads in fp32 the questions whose decision int8 noise could flip; onnx-int8-alone does not
# (faster, fewer answers equal to fp32's: docs/onnx.md)
ONNX_INT8_BACKENDS = ("onnx-int8", "onnx-int8-alone")
# OpenVINO's int8 agrees with fp32 without a re-read (docs/openvino.md)
OPENVINO_BACKENDS = ("openvino-int8",)
INT8_BACKENDS = (*ONNX_INT8_BACKENDS, *OPENVINO_BACKENDS)
BACKENDS = ("torch", "onnx", *INT8_BACKENDS, "auto")


class Backend(Protocol):
    name: str
    input_names: tuple[str, ...]

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, float32 arrays of shape (batch, length)."""
        ...


def cpu_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's instruction-set flags, from /proc/cpuinfo or the given text (empty where there is none).

    Flags named in $SPANQA_HIDDEN_CPU_FLAGS (comma-separated) are left out of /proc/cpuinfo's: that is how
    benchmarks/avx2_only.py, which hides them from CPUID too, makes this machine choose as an AVX2 CPU would.
    """
    hidden: set[str] = set()
    if cpuinfo is None:
        hidden = set(filter(None, os.environ.get("SPANQA_HIDDEN_CPU_FLAGS", "").split(",")))
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:  # not Linux
            return set()
    line = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split()) - hidden


def lane_rows(rows: int, lanes: int) -> list[np.ndarray]:
    """Which rows of a batch each lane reads: whole rows per one-thread run, no barrier per operator."""
    return np.array_split(np.arange(rows), min(lanes, rows))


def joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The lanes' start and end logits, back in row order."""
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class LazyBackend:
    """A backend made on its first call, once, however many threads ask: int8's fp32 re-read, which most
    readers never need."""

    def __init__(self, make: Callable[[], Backend]):
        self._make = make
        self._made: Backend | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Backend:
        with self._lock:
            if self._made is None:
                self._made = self._make()
            return self._made
