"""PyTorch fp32 inference, the reference every other backend is checked against."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from spanqa.backends.base import MODEL_INPUTS
from spanqa.errors import ModelError


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
