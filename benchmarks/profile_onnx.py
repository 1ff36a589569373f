"""Where the time of one question goes: tokenization, Python glue, and the runtime's own per-op profile.

    python benchmarks/profile_onnx.py [--model DIR] [--data FILE] [--limit 200]
                                      [--backend onnx-int8|onnx|openvino-int8] [--threads N]

Part 1 answers --limit questions one at a time with `Reader.answer` and splits each call into the
tokenizer (`Windower`), the model call (`backend.run`) and the rest (padding, decoding, Python glue).
Part 2 runs the same windows through an ONNX Runtime session with profiling on and sums node time per
operator type, so the share of matrix products, attention, layer norms and the rest is visible (for
openvino-int8, OpenVINO's PERF_COUNT per node type and kernel instead).
Prints one markdown table per part.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from spanqa.backends.layernorm import UNFUSED_OPTIMIZERS
from spanqa.backends.onnx_backend import OnnxBackend, cpu_cores
from spanqa.evaluation.bench import cpu_model, default_data
from spanqa.evaluation.squad import load_squad
from spanqa.reading.reader import DEFAULT_DOC_STRIDE, Reader
from spanqa.reading.windows import Windower, pad_batch

UNFUSED = list(UNFUSED_OPTIMIZERS)  # as the backend makes its sessions


class _Timed:
    """Wraps a callable and sums the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t


def stage_breakdown(reader: Reader, items: list[tuple[str, str]]) -> list[str]:
    run = _Timed(reader.backend.run)
    reader.backend.run = run  # instance attribute: only this reader's backend is timed
    tokenize = _Timed(Windower.__call__)
    Windower.__call__ = lambda self, q, c: tokenize(self, q, c)
    reread, precise = _Timed(lambda inputs: None), None
    if getattr(reader.backend, "fallback", None) is not None:  # int8: the fp32 re-read near a decision
        precise = reader.backend.fallback()
        reread.fn = precise.run
        precise.run = reread
    try:
        for item in items[:5]:  # warm-up, not counted
            reader.answer(*item)
        run.seconds = tokenize.seconds = reread.seconds = 0.0
        started = time.perf_counter()
        for item in items:
            reader.answer(*item)
        total = time.perf_counter() - started
    finally:
        Windower.__call__ = tokenize.fn
        del reader.backend.run
        if precise is not None:
            del precise.run
    n = len(items)
    rest = total - run.seconds - tokenize.seconds - reread.seconds
    rows = [
        ("model (backend.run)", run.seconds),
        ("fp32 re-read of questions near the decision", reread.seconds),
        ("tokenizer (Windower)", tokenize.seconds),
        ("the rest", rest),
    ]
    lines = ["| stage | ms per question | share |", "| --- | ---: | ---: |"]
    for name, s in rows:
        lines.append(f"| {name} | {1000 * s / n:.2f} | {100 * s / total:.1f}% |")
    lines.append(f"| **total** (`Reader.answer`) | **{1000 * total / n:.2f}** | 100% |")
    return lines


def question_batches(reader: Reader, items: list[tuple[str, str]]) -> list[dict[str, np.ndarray]]:
    """Each question's windows as one padded batch, as `Reader.answer` runs them."""
    windower = reader._windower(None, DEFAULT_DOC_STRIDE)
    batches = []
    for q, c in items:
        windows = windower([q], [c])
        batches.append(pad_batch(windows, list(range(len(windows))), reader.pad_id, reader.token_types))
    return batches


def openvino_op_profile(reader: Reader, items: list[tuple[str, str]], threads: int | None) -> list[str]:
    backend = reader.backend
    compiled = backend.compile(
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or cpu_cores(), "PERF_COUNT": True}
    )
    request = compiled.create_infer_request()
    feeds = [backend.feed(b) for b in question_batches(reader, items)]
    for feed in feeds[:5]:
        request.infer(feed)
    per_op: dict[str, float] = defaultdict(float)
    runs = 0.0
    for feed in feeds:
        started = time.perf_counter()
        request.infer(feed)
        runs += time.perf_counter() - started
        for node in request.get_profiling_info():
            per_op[f"{node.node_type} ({node.exec_type})"] += node.real_time.total_seconds()
    nodes = sum(per_op.values())
    # OpenVINO's node counters can add up to more than the wall time of the call: no "between nodes" row
    totals = [("sum of node times", nodes), ("**infer** (wall time of the call)", runs)]
    return op_table("node type (kernel)", per_op, totals, feeds, "all windows, padded", floor_ms=0.005)


def op_profile(reader: Reader, items: list[tuple[str, str]], threads: int | None) -> list[str]:
    batches = question_batches(reader, items)
    with tempfile.TemporaryDirectory() as tmp:
        backend = OnnxBackend(reader.backend.file, reader.backend.name, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(
            str(backend.file), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED
        )
        names = [i.name for i in session.get_inputs()]
        for b in batches[:5]:
            session.run(None, {k: b[k] for k in names})
        session.end_profiling()
        session = ort.InferenceSession(
            str(backend.file), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED
        )
        for b in batches:
            session.run(None, {k: b[k] for k in names})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    runs = 0.0
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs += e["dur"]
    nodes = sum(per_op.values())
    seconds = {op: us / 1e6 for op, us in per_op.items()}  # the profiler counts microseconds
    totals = [("(between nodes)", (runs - nodes) / 1e6), ("**model_run**", runs / 1e6)]
    return op_table("operator", seconds, totals, batches, "all windows")


def op_table(
    kind: str,
    seconds: dict[str, float],
    totals: list[tuple[str, float]],
    batches: list[dict[str, np.ndarray]],
    what: str,
    floor_ms: float = float("-inf"),
) -> list[str]:
    """Seconds per operator over all questions -> markdown rows per question, largest first; the last of
    `totals` is the model's own time, the 100% every share is of. Rows under `floor_ms` are left out."""
    n, whole = len(batches), totals[-1][1]
    lines = [f"| {kind} | ms per question | share of model time |", "| --- | ---: | ---: |"]
    for name, s in [*sorted(seconds.items(), key=lambda kv: -kv[1]), *totals[:-1]]:
        if 1000 * s / n >= floor_ms:
            lines.append(f"| {name} | {1000 * s / n:.2f} | {100 * s / whole:.1f}% |")
    lines.append(f"| {totals[-1][0]} | **{1000 * whole / n:.2f}** | 100% |")
    tokens = np.mean([b["input_ids"].size for b in batches])
    lines += ["", f"{n} questions, {tokens:.0f} tokens per question on average ({what})"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--backend", default="onnx-int8", choices=["onnx", "onnx-int8", "openvino-int8"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.data is None:
        parser.error("no --data given and ../shared/data/squad-v2.0-dev-half.json not found")
    items = [(ex.question, ex.context) for ex in load_squad(args.data)[: args.limit]]
    reader = Reader.load(args.model, backend=args.backend, threads=args.threads)
    print(f"# Profile: {args.backend}, {len(items)} questions of {args.data.name}")
    print(f"\n- CPU: {cpu_model()}, {cpu_cores()} cores usable, threads {args.threads or cpu_cores()}\n")
    print("\n".join(stage_breakdown(reader, items)))
    print()
    profile = openvino_op_profile if args.backend == "openvino-int8" else op_profile
    print("\n".join(profile(reader, items, args.threads)))


if __name__ == "__main__":
    main()
