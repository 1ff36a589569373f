"""Which backend runs a model: the registry behind `Reader.load(..., backend=...)`, and what auto means."""

from __future__ import annotations

import logging
from pathlib import Path

from spanqa.backends.base import BACKENDS, OPENVINO_BACKENDS, Backend
from spanqa.backends.model_dir import check_weights
from spanqa.backends.torch_backend import TorchBackend
from spanqa.errors import InputError, check_positive

log = logging.getLogger(__name__)


def load_backend(name: str, model_dir: Path, threads: int | None = None) -> Backend:
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if threads is not None:
        check_positive("threads", threads)
    check_weights(model_dir)  # every backend reads them: torch directly, the ONNX ones through their export
    if name == "auto":
        name = resolve_auto(model_dir)
        log.info("backend auto: using %s", name)
    if name == "torch":
        return TorchBackend(model_dir, threads)
    if name in OPENVINO_BACKENDS:
        from spanqa.backends.openvino_backend import load_openvino_backend

        return load_openvino_backend(name, model_dir, threads)
    from spanqa.backends.onnx_backend import load_onnx_backend

    return load_onnx_backend(name, model_dir, threads)


def resolve_auto(model_dir: Path) -> str:
    """The backend auto runs for this model here: the measured or card's choice (onnx_backend.auto_backend),
    with OpenVINO only where it is installed and the CPU has an int8 dot product, and torch when ONNX Runtime
    is missing."""
    from spanqa.backends import onnx_backend, openvino_backend

    name = onnx_backend.auto_backend(model_dir)
    if name in OPENVINO_BACKENDS and not openvino_backend.available():
        name = "onnx-int8"  # measured on VNNI CPUs only (openvino_backend.INT8_DOT_FLAGS)
    if name != "torch" and name not in OPENVINO_BACKENDS and not onnx_backend.onnxruntime_installed():
        log.warning("backend auto: onnxruntime is not installed; using torch")
        name = "torch"
    return name
