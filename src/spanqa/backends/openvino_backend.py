"""OpenVINO inference: int8 weights, activations quantized per group of 64 channels of each token at run time.

Why a second runtime beside ONNX Runtime: on an AVX-512 VNNI Xeon its CPU plugin multiplies every product of
MiniLM-L6 in int8 (the feed-forward outputs included) with one activation scale per 64 input channels of each
token, where ONNX Runtime's dynamic int8 has one scale per tensor. Finer scales agree with fp32 often enough
that no question needs reading again in fp32 (98.2% of 1000 tuning questions, against ONNX Runtime int8's
95.3% before its re-read), and the products run faster (docs/onnx.md, "OpenVINO"). A token's scales depend
on that token alone, so an answer depends on what else is in its batch only through float rounding.

It reads the same fp32 ONNX file as the onnx backend (the export cache) and makes its int8 weights in memory
when it loads: nothing new is written to disk.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.base import cpu_cores, cpu_flags, joined, lane_rows
from spanqa.errors import ModelError

# Input channels sharing one activation scale: the fastest size whose answers equal fp32's for >= 98% of 600
# dev-rest-tune questions (never dev-half). benchmarks/openvino_groups.py: 32 -> 97.8% at 66.0 q/s,
# 64 -> 98.0% at 82.6, 128 -> 97.3% at 89.4, 192 -> 96.7% at 89.2.
GROUP_SIZE = 64
# Windows are padded to a multiple of this many tokens. OpenVINO compiles kernels for each input shape it
# meets (and keeps them): with every length its own shape, a stream of single questions paid that on most
# of them, and the kept kernels grew the memory. `spanqa bench --limit 600`, two runs the same hour: one at a
# time, p50 9.5 ms against 11.1, peak RSS 362 MB against 551; batched 119 against 106 q/s, 546 MB against 884.
LENGTH_STEP = 16
# CPUs with an int8 dot product, where backend="auto" may choose OpenVINO. It was measured on AVX-512 VNNI;
# without any (AVX2 alone) it never was, so auto keeps ONNX Runtime's int8 there.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni")


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise ModelError(
            "backend openvino-int8 needs OpenVINO: pip install 'openvino>=2026.4,<2027' (or use onnx-int8)"
        ) from None
    return openvino


def available() -> bool:
    """Whether OpenVINO can be imported and this CPU has an int8 dot product (INT8_DOT_FLAGS)."""
    try:
        _openvino()
    except ModelError:
        return False
    return has_int8_dot_product()


def has_int8_dot_product(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (or the /proc/cpuinfo text given) lists one of INT8_DOT_FLAGS."""
    return bool(cpu_flags(cpuinfo) & set(INT8_DOT_FLAGS))


def int8_weights(model: Any) -> int:
    """Every constant 2-D weight of a MatMul as int8, one scale per output channel, dequantized in the graph.

    OpenVINO's CPU plugin recognises int8 constant -> Convert -> Multiply as compressed weights and, with
    DYNAMIC_QUANTIZATION_GROUP_SIZE, multiplies them with int8 activations. Returns how many were changed.
    """
    import openvino.opset13 as ops

    changed = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        const = op.input(1).get_source_output().get_node()
        if const.get_type_name() != "Constant" or len(const.get_output_shape(0)) != 2:
            continue
        weight = const.get_data()
        if weight.dtype != np.float32 or weight.size == 0:  # an fp32 export's weights, nothing else
            continue
        # MatMul(x, W) sums over W's rows; with transpose_b over its columns: one scale per output channel
        axis = 1 if op.get_attributes().get("transpose_b") else 0
        scale = np.abs(weight).max(axis=axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        dequantized = ops.multiply(ops.convert(ops.constant(q), np.float32), ops.constant(scale))
        op.input(1).replace_source_output(dequantized.output(0))
        changed += 1
    model.validate_nodes_and_infer_types()
    return changed


class OpenVinoBackend:
    """OpenVINO's CPU plugin: every core on one window, and for batches `lanes` one-thread streams that each
    read a share of the rows (the onnx backend's lanes, measured the same way)."""

    def __init__(
        self,
        file: Path,
        name: str,
        threads: int | None = None,
        lanes: int | None = None,
    ):
        ov = _openvino()
        self.threads = threads or cpu_cores()
        self.lanes = self.threads if lanes is None else max(1, lanes)
        self.name = name
        self.file = file
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(file))
        except Exception as e:  # OpenVINO raises its own types for unreadable or unsupported graphs
            raise ModelError(f"OpenVINO cannot read {file}: {e}") from None
        if not int8_weights(self._model):
            raise ModelError(f"{file} has no constant matrix products to make int8")
        self._single = self.compile({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": self.threads})
        self._streams: Any = None  # compiled on the first batch: single questions never pay for it
        self._lock = threading.Lock()
        self._idle: dict[str, queue.SimpleQueue] = {kind: queue.SimpleQueue() for kind in ("single", "lanes")}
        self.input_names = tuple(i.get_any_name() for i in self._single.inputs)
        outputs = {o.get_any_name() for o in self._single.outputs}
        if not {"start_logits", "end_logits"} <= outputs:
            raise ModelError(f"{file} has outputs {sorted(outputs)}, not start_logits and end_logits")

    def compile(self, config: dict[str, Any]) -> Any:
        """The int8 model compiled for this CPU with `config` added to spanqa's settings."""
        config = {**config, "DYNAMIC_QUANTIZATION_GROUP_SIZE": GROUP_SIZE}
        try:
            return self._core.compile_model(self._model, "CPU", config)
        except Exception as e:
            raise ModelError(f"OpenVINO cannot compile {self.file} for this CPU: {e}") from None

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        length = inputs["attention_mask"].shape[1]
        start, end = self._run(self.feed(inputs))
        return start[:, :length], end[:, :length]

    def feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's inputs padded to a multiple of LENGTH_STEP tokens."""
        padded = -(-inputs["attention_mask"].shape[1] // LENGTH_STEP) * LENGTH_STEP
        return {k: _pad(inputs[k], padded) for k in self.input_names}

    def _run(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        rows = len(feed[self.input_names[0]])
        if self.lanes < 2 or rows < 2:
            with self._request("single") as request:
                request.infer(feed)
                return _logits(request)
        with self._lock:
            if self._streams is None:
                # one thread per stream: a lane computes its rows alone, without a barrier per operator
                lanes = self.lanes
                self._streams = self.compile({"NUM_STREAMS": lanes, "INFERENCE_NUM_THREADS": lanes})
        parts = lane_rows(rows, self.lanes)
        requests = [self._take("lanes") for _ in parts]
        started = []
        try:
            for request, part in zip(requests, parts):
                request.start_async({k: np.ascontiguousarray(v[part]) for k, v in feed.items()})
                started.append(request)
            for request in started:
                request.wait()
            done = [_logits(request) for request in requests]
        finally:
            for request in started:  # none goes back to the pool still running, even after an error
                with contextlib.suppress(Exception):
                    request.wait()
            for request in requests:
                self._idle["lanes"].put(request)
        return joined(done)

    def _take(self, kind: str) -> Any:
        # a request holds its own buffers: a reader shared by threads takes one each, made on first need
        try:
            return self._idle[kind].get_nowait()
        except queue.Empty:
            compiled = self._single if kind == "single" else self._streams
            return compiled.create_infer_request()

    @contextlib.contextmanager
    def _request(self, kind: str) -> Iterator[Any]:
        request = self._take(kind)
        try:
            yield request
        finally:
            self._idle[kind].put(request)


def _pad(x: np.ndarray, length: int) -> np.ndarray:
    """Columns of zeros up to `length` (masked out: attention_mask is 0 there)."""
    if x.shape[1] == length:
        return np.ascontiguousarray(x)
    out = np.zeros((x.shape[0], length), dtype=x.dtype)
    out[:, : x.shape[1]] = x
    return out


def _logits(request: Any) -> tuple[np.ndarray, np.ndarray]:
    # copies: the request's output buffers are overwritten by its next run
    start = request.get_tensor("start_logits").data.copy()
    end = request.get_tensor("end_logits").data.copy()
    return start, end


def load_openvino_backend(name: str, model_dir: Path, threads: int | None = None) -> OpenVinoBackend:
    """openvino-int8: the model's fp32 ONNX graph (exported on first use), with int8 weights made here."""
    from spanqa.backends.model_cache import FP32_FILE, weight_files
    from spanqa.backends.onnx_backend import onnx_file

    _openvino()  # a missing runtime is reported before any export work
    if not weight_files(model_dir) and not (model_dir / FP32_FILE).is_file():
        raise ModelError(f"{model_dir} has no fp32 graph ({FP32_FILE}) for OpenVINO; use backend='onnx-int8'")
    return OpenVinoBackend(onnx_file(model_dir, int8=False), name, threads)
