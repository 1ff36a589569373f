"""Backends run the model: padded numpy arrays in, start and end logits out.

Every backend has the same small interface (`name`, `input_names`, `run`), so the reader, training
evaluation and benchmarks never care which one is behind it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Protocol

import numpy as np

from spanqa.errors import InputError, ModelError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BACKENDS = ("torch", "onnx", "onnx-int8", "auto")


class Backend(Protocol):
    name: str
    input_names: tuple[str, ...]

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, float32 arrays of shape (batch, length)."""
        ...


class TorchBackend:
    """PyTorch fp32 inference with the Hugging Face model class."""

    name = "torch"

    def __init__(self, model_dir: Path, threads: int | None = None):
        import torch
        from transformers import AutoModelForQuestionAnswering
        from transformers import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        try:
            model = AutoModelForQuestionAnswering.from_pretrained(
                str(model_dir), dtype=torch.float32, trust_remote_code=False
            )
        except (OSError, ValueError, KeyError) as e:  # transformers' messages run on: keep the first line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(f"cannot load a question-answering model from {model_dir}: {first}") from None
        self.model = model.eval()
        params = inspect.signature(self.model.forward).parameters
        self.input_names = tuple(n for n in MODEL_INPUTS if n in params)
        self._torch = torch

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(inputs[k]) for k in self.input_names})
        return out.start_logits.float().numpy(), out.end_logits.float().numpy()


def load_backend(name: str, model_dir: Path, threads: int | None = None) -> Backend:
    if name == "torch":
        return TorchBackend(model_dir, threads)
    if name in ("onnx", "onnx-int8", "auto"):
        from spanqa.onnx_backend import load_onnx_backend

        return load_onnx_backend(name, model_dir, threads)
    raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
