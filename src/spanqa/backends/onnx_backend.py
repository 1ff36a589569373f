"""ONNX Runtime inference (fp32 or int8), and the choice behind backend="auto".

Loading never imports torch or transformers: the ONNX file comes from the model directory itself (what
`spanqa export --out DIR` writes) or from the export cache, and only a cache miss runs the exporter.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.base import ONNX_INT8_BACKENDS, LazyBackend, cpu_cores, joined, lane_rows
from spanqa.backends.export import ensure_cached_export
from spanqa.backends.layernorm import UNFUSED_OPTIMIZERS
from spanqa.backends.model_cache import (
    FP32_FILE,
    INT8_FILE,
    cached_export_dir,
    model_fingerprint,
    read_report,
    weight_files,
)
from spanqa.errors import InputError, ModelError

BENCH_FILE = "bench.json"  # what `spanqa bench --record` measured on this machine, in the export cache
CARD_AUTO = "auto_backend"  # the model card's choice, from the official benchmark run
DEFAULT_AUTO = "onnx"  # unmeasured: as fast as ONNX gets without any change to the answers
# onnx-int8-alone is never auto's choice: it gives up agreement with fp32 for speed, a caller's call to make
AUTO_CANDIDATES = ("torch", "onnx", "onnx-int8", "openvino-int8")
AUTO_F1_MARGIN = 0.5  # auto never picks a configuration more than this many F1 points below fp32
# ONNX Runtime's intra-op threads busy-wait between operators by default. On a machine whose cores are shared
# (other processes, other services) a spinning thread holds a core another thread is waiting for: with them
# sleeping instead, single-question p50 was 165 ms against 355 (2 cores, load average ~26,
# benchmarks/levers.py). So they sleep, unless SPANQA_ONNX_SPIN_US=N asks them to busy-wait N microseconds
# first, for a machine whose cores the reader has to itself: on an idle 2-core Xeon, 50 us took one int8
# window from 12.7 to 11.2 ms; with two busy processes beside it, from 18.1 to 22.4 ms (docs/onnx.md).
SPIN_ENV = "SPANQA_ONNX_SPIN_US"


def onnxruntime_installed() -> bool:
    try:
        _onnxruntime()
    except ModelError:
        return False
    return True


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            "the onnx backends need onnxruntime: pip install 'onnxruntime>=1.22,<2' (or use backend='torch')"
        ) from None
    return onnxruntime


class OnnxBackend:
    """ONNX Runtime on the CPU: one session using every core for single windows, and `lanes` parallel
    one-thread runs for batches (each lane reads a share of the batch's rows).

    Why lanes: at SQuAD lengths one window's matrices are small, and splitting each product across cores
    costs a barrier per operator; whole rows per core need none. docs/onnx.md has the measurements.
    """

    def __init__(
        self,
        file: Path,
        name: str,
        threads: int | None = None,
        lanes: int | None = None,
        precise: Callable[[], Any] | None = None,
    ):
        ort = _onnxruntime()
        threads = threads or cpu_cores()
        self.session = _session(ort, file, threads)
        self.lanes = threads if lanes is None else max(1, lanes)
        self._lane_session: Any = None  # made on the first batch: single questions never pay for it
        self._pool: Any = None
        self._pool_lock = threading.Lock()  # a reader shared by threads makes one pool
        self.name = name
        self.file = file
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        outputs = [o.name for o in self.session.get_outputs()]
        if not {"start_logits", "end_logits"} <= set(outputs):
            raise ModelError(f"{file} has outputs {outputs}, not start_logits and end_logits")
        self._outputs = ["start_logits", "end_logits"]
        # int8: the fp32 backend that re-reads the questions int8 noise could flip
        # (reading.steps.FALLBACK_MARGIN), made on first use
        self.fallback = LazyBackend(precise) if precise is not None else None

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feed = {k: inputs[k] for k in self.input_names}
        rows = len(feed[self.input_names[0]])
        if self.lanes < 2 or rows < 2:
            start, end = self.session.run(self._outputs, feed)
            return start, end
        with self._pool_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                # intra_op_num_threads=1: a run computes on its caller's thread, so one session serves all
                self._lane_session = _session(_onnxruntime(), self.file, 1)
                self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="spanqa-onnx")
        parts = lane_rows(rows, self.lanes)
        runs = [
            self._pool.submit(self._lane_session.run, self._outputs, {k: v[p] for k, v in feed.items()})
            for p in parts
        ]  # ONNX Runtime releases the GIL while it computes
        done = [r.result() for r in runs]
        return joined(done)


def spin_microseconds() -> int:
    """Microseconds intra-op threads busy-wait before they sleep: SPANQA_ONNX_SPIN_US (unset or 0: none)."""
    raw = os.environ.get(SPIN_ENV, "").strip() or "0"
    if not raw.isdigit():
        raise InputError(f"{SPIN_ENV} must be a whole number of microseconds (e.g. 50), got {raw!r}")
    return int(raw)


def _session(ort: Any, file: Path, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one graph branch at a time: the matrix products use every core
    spin_us = spin_microseconds()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_us else "0")
    if spin_us:
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(file),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(UNFUSED_OPTIMIZERS),  # they would fuse the plain layer norms back
        )
    except Exception as e:  # ORT raises its own exception types for unreadable or invalid graphs
        raise ModelError(f"ONNX Runtime cannot load {file}: {e}") from None


def load_onnx_backend(name: str, model_dir: Path, threads: int | None = None) -> Any:
    """The backend called `name` (onnx, onnx-int8 or onnx-int8-alone) for this model directory."""
    if name != "onnx" and name not in ONNX_INT8_BACKENDS:
        raise ModelError(f"unknown ONNX backend {name!r}")
    _onnxruntime()  # a missing runtime is reported before any export work
    if name == "onnx":
        return OnnxBackend(onnx_file(model_dir, int8=False), name, threads)

    # the fp32 re-read needs an fp32 graph or the weights to make one: a directory holding only the int8
    # graph (`spanqa export --int8`, the copy shipped to Ray workers) answers with int8 alone
    def fp32() -> OnnxBackend:
        # One session, no lanes: the re-read's batches are a few windows, and a second fp32 session cost
        # ~90 MB of peak memory for no measured speed (onnx-int8 batched 87.8 / 92.2 q/s against 86.8 / 91.9).
        return OnnxBackend(onnx_file(model_dir, int8=False), "onnx", threads, lanes=1)

    has_fp32 = name == "onnx-int8" and (bool(weight_files(model_dir)) or (model_dir / FP32_FILE).is_file())
    return OnnxBackend(onnx_file(model_dir, int8=True), name, threads, precise=fp32 if has_fp32 else None)


def onnx_file(model_dir: Path, int8: bool) -> Path:
    """The model's own exported file when it is current, else the cached export (made on first use)."""
    own = model_dir / (INT8_FILE if int8 else FP32_FILE)
    weights = weight_files(model_dir)
    if not weights:  # a directory made by `spanqa export --out`: its ONNX files are the model
        if own.is_file():
            return own
        what = "--int8 " if int8 else ""
        raise ModelError(
            f"{model_dir} has neither weights nor {own.name}; "
            f"run: spanqa export --model SOURCE {what}--out DIR"
        )
    fingerprint = model_fingerprint(model_dir)
    if own.is_file() and read_report(model_dir).get("fingerprint") == fingerprint:
        return own
    return ensure_cached_export(model_dir, int8, fingerprint)


def auto_backend(model_dir: Path) -> str:
    """The configuration `auto` runs: measured on this machine, else the model card's, else DEFAULT_AUTO."""
    measured = read_bench(model_dir).get("auto")
    if measured:
        return str(measured)
    from spanqa.backends.model_dir import read_card

    return str(read_card(model_dir).get(CARD_AUTO) or DEFAULT_AUTO)


def choose_auto(results: dict[str, dict[str, float]]) -> str | None:
    """The fastest backend (batched queries/s) whose F1 is within AUTO_F1_MARGIN of fp32's.

    `results` maps a backend ("torch", "onnx", "onnx-int8") to {"qps": ..., "f1": ...}; fp32 is torch's F1
    when measured, else onnx's. None when no fp32 configuration was measured.
    """
    reference = results.get("torch") or results.get("onnx")
    if reference is None:
        return None
    floor = reference["f1"] - AUTO_F1_MARGIN
    fit = [(r["qps"], n) for n, r in results.items() if r["f1"] >= floor and n in AUTO_CANDIDATES]
    return max(fit)[1] if fit else None


def bench_file(model_dir: Path) -> Path | None:
    """Where this machine's measurement of the model is kept (None for a directory without weights)."""
    if not weight_files(model_dir):
        return model_dir / BENCH_FILE if (model_dir / BENCH_FILE).is_file() else None
    return cached_export_dir(model_dir) / BENCH_FILE


def read_bench(model_dir: Path) -> dict[str, Any]:
    import json

    file = bench_file(model_dir)
    if file is None or not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
