"""Where generated model files live: the cache root, a model's fingerprint, the export folder and its report.

Cheap to import (no torch, no onnx): the ONNX backend finds a cached export, and run journals key their
results by model, without loading either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Bump when the export recipe changes (exporter options, fusions, quantization): old exports are then redone.
EXPORT_RECIPE = 6
OPSET = 17
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
REPORT_FILE = "export.json"
# What decides the exported graph: weights, architecture, and the tokenizer the verification runs through.
_CONTENT_FILES = ("config.json", "tokenizer.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


def cache_root() -> Path:
    """Where generated files go: $SPANQA_CACHE, else $XDG_CACHE_HOME/spanqa, else ~/.cache/spanqa."""
    if os.environ.get("SPANQA_CACHE"):
        return Path(os.environ["SPANQA_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "spanqa"


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))


def model_fingerprint(model_dir: Path) -> str:
    """A hash of the model's content (weights, config, tokenizer) and of the export recipe.

    Remembered per process while the files' sizes and modification times stay the same: loading a model
    asks for it from several places (the export cache, backend=auto's measurements, run journals).
    """
    files = [model_dir / n for n in _CONTENT_FILES if (model_dir / n).is_file()] + weight_files(model_dir)
    stats = tuple((str(f.resolve()), *_identity(f.stat())) for f in files)
    if stats not in _fingerprints:
        _fingerprints[stats] = _hash_files(files)
    return _fingerprints[stats]


_fingerprints: dict[tuple, str] = {}


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256(f"spanqa-export-{EXPORT_RECIPE}-opset{OPSET}".encode())
    for file in files:
        digest.update(f"\0{file.name}\0".encode())
        with open(file, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def cached_export_dir(model_dir: Path, fingerprint: str | None = None) -> Path:
    return cache_root() / "onnx" / (fingerprint or model_fingerprint(model_dir))[:32]


def read_report(export_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((export_dir / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_json_atomic(file: Path, data: dict[str, Any]) -> None:
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, file)


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """An inter-process lock, released by the OS if the holder dies; no lock where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: rename-into-place still keeps every file whole
        yield
        return
    with open(lock_file, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
