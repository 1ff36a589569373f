"""The backend interface. A backend runs the model: padded numpy arrays in, start and end logits out.

Every backend has the same small interface (`name`, `input_names`, `run`), so the reader, training
evaluation and benchmarks never care which one is behind it.
"""

from __future__ import annotations

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
