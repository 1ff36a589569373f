"""Which backend runs a model: the registry behind `Reader.load(..., backend=...)`."""

from __future__ import annotations

from pathlib import Path

from spanqa.backends.base import BACKENDS, Backend
from spanqa.backends.model_dir import check_weights
from spanqa.backends.torch_backend import TorchBackend
from spanqa.errors import InputError, check_positive


def load_backend(name: str, model_dir: Path, threads: int | None = None) -> Backend:
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if threads is not None:
        check_positive("threads", threads)
    check_weights(model_dir)  # every backend reads them: torch directly, the ONNX ones through their export
    if name == "torch":
        return TorchBackend(model_dir, threads)
    from spanqa.backends.onnx_backend import load_onnx_backend

    return load_onnx_backend(name, model_dir, threads)
