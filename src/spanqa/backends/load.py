"""Which backend runs a model: the registry behind `Reader.load(..., backend=...)`."""

from __future__ import annotations

from pathlib import Path

from spanqa.backends.base import BACKENDS, Backend
from spanqa.backends.torch_backend import TorchBackend
from spanqa.errors import InputError


def load_backend(name: str, model_dir: Path, threads: int | None = None) -> Backend:
    if name == "torch":
        return TorchBackend(model_dir, threads)
    if name in ("onnx", "onnx-int8", "auto"):
        from spanqa.backends.onnx_backend import load_onnx_backend

        return load_onnx_backend(name, model_dir, threads)
    raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
