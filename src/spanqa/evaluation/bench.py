"""The throughput benchmark behind `spanqa bench` and benchmarks/throughput.py.

Each configuration (backend x one-at-a-time or batched) runs in its own process, so its peak RSS and start-up
are its own, on the same questions, in one run: compare rows of one table, never numbers across runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.base import INT8_BACKENDS, ONNX_INT8_BACKENDS
from spanqa.errors import InputError
from spanqa.reading.bucketing import BATCH_SIZE

CONFIGS = {  # name -> (backend, batched)
    "torch-single": ("torch", False),
    "torch-batched": ("torch", True),
    "onnx-single": ("onnx", False),
    "onnx-batched": ("onnx", True),
    "onnx-int8-single": ("onnx-int8", False),
    "onnx-int8-batched": ("onnx-int8", True),
    # int8 without the fp32 re-read of borderline questions (reading.steps.FALLBACK_MARGIN)
    "onnx-int8-alone-single": ("onnx-int8-alone", False),
    "onnx-int8-alone-batched": ("onnx-int8-alone", True),
    # OpenVINO's int8 (backends/openvino_backend.py)
    "openvino-int8-single": ("openvino-int8", False),
    "openvino-int8-batched": ("openvino-int8", True),
}
DEFAULT_CONFIGS = (
    "torch-single",
    "torch-batched",
    "onnx-batched",
    "onnx-int8-single",
    "onnx-int8-batched",
    "openvino-int8-single",
    "openvino-int8-batched",
)
BASELINE = "torch-single"
WARMUP = 5  # questions answered before timing starts (first-call allocations, lazy initialisation)


@dataclass
class BenchOptions:
    model: str | None
    data: Path
    limit: int = 1000
    configs: tuple[str, ...] = DEFAULT_CONFIGS
    batch_size: int = BATCH_SIZE
    threads: int | None = None
    out: Path | None = None


# The instruction sets int8 and bf16 speed depends on: cpu_model() names which of them the CPU has
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def parse_configs(text: str) -> tuple[str, ...]:
    names = tuple(CONFIGS) if text == "all" else tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        raise InputError(f"unknown configuration {unknown}; choose from {', '.join(CONFIGS)} or 'all'")
    return names


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Measure every configuration on the first `limit` questions; returns rows and the markdown table."""
    from spanqa.backends.model_dir import resolve_model
    from spanqa.evaluation.squad import load_squad

    model_dir = resolve_model(opts.model)
    examples = load_squad(opts.data)[: opts.limit]
    if not examples:
        raise InputError(f"{opts.data} has no questions")
    if any(CONFIGS[c][0] != "torch" for c in opts.configs):
        prepare_exports(model_dir, opts.configs)
    rows = {}
    for name in opts.configs:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows[name] = run_worker(name, model_dir, opts)
    _score(rows, examples)
    table = format_table(rows, opts, model_dir, len(examples))
    return {"rows": rows, "table": table, "model_dir": model_dir}


def prepare_exports(model_dir: Path, configs: tuple[str, ...]) -> None:
    """Export before timing: a first use's export would otherwise count as load time."""
    from spanqa.backends.onnx_backend import onnx_file

    # int8 first: its export writes the fp32 file too, from one load of the torch model
    # (openvino reads the fp32 file and makes its int8 weights in memory)
    kinds = {CONFIGS[c][0] in ONNX_INT8_BACKENDS for c in configs if CONFIGS[c][0] != "torch"}
    for int8 in sorted(kinds, reverse=True):
        onnx_file(model_dir, int8=int8)


def run_worker(name: str, model_dir: Path, opts: BenchOptions) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spanqa-bench-") as tmp:
        result = Path(tmp) / "result.json"
        args = {
            "config": name,
            "model": str(model_dir),
            "data": str(opts.data),
            "limit": opts.limit,
            "batch_size": opts.batch_size,
            "threads": opts.threads,
            "out": str(result),
        }
        code = (
            "import sys, time; t = time.time(); "
            "from spanqa.evaluation.bench import worker; worker(sys.argv[1], t)"
        )
        started = time.time()
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], check=False)
        if proc.returncode != 0 or not result.is_file():
            raise RuntimeError(f"benchmark configuration {name} failed (exit code {proc.returncode})")
        row = json.loads(result.read_text(encoding="utf-8"))
    row["first_answer_s"] = row.pop("first_answer_at") - started  # process start to first answer
    return row


def worker(arg: str, imported_at: float) -> None:
    """One configuration, in its own process: timings, predictions and peak RSS written as JSON."""
    from spanqa.evaluation.squad import load_squad
    from spanqa.reading.reader import Reader

    a = json.loads(arg)
    backend, batched = CONFIGS[a["config"]]
    examples = load_squad(a["data"])[: a["limit"]]
    items = [(ex.question, ex.context) for ex in examples]
    started = time.perf_counter()
    reader = Reader.load(a["model"], backend=backend, threads=a["threads"])
    load_s = time.perf_counter() - started
    reader.answer(*items[0])
    first_answer_at = time.time()
    # Sessions made on first need (the lanes' session for batches, int8's fp32 re-read) exist in a warm
    # reader: warm-up re-reads every question once, in the mode timed.
    with _every_question_re_read():
        if batched:
            reader.answer_batch(items[1 : 1 + WARMUP], batch_size=a["batch_size"])
        else:
            for item in items[1 : 1 + WARMUP]:
                reader.answer(*item)
    latencies: list[float] = []
    cpu_started = time.process_time()
    if batched:
        started = time.perf_counter()
        preds = reader.answer_batch(items, batch_size=a["batch_size"], progress=True)
        total = time.perf_counter() - started
    else:
        preds, total = _one_at_a_time(reader, items, latencies)
    row = {
        "config": a["config"],
        "backend": reader.backend.name,
        "qps": len(items) / total,
        "seconds": total,
        # CPU seconds of all this process's threads: on a shared machine, the work itself (with one thread,
        # nothing spins), where wall time also counts the waits for a core
        "cpu_ms_per_question": 1000 * (time.process_time() - cpu_started) / len(items),
        "p50_ms": 1000 * float(np.percentile(latencies, 50)) if latencies else None,
        "p95_ms": 1000 * float(np.percentile(latencies, 95)) if latencies else None,
        "load_s": load_s,
        "first_answer_at": first_answer_at,
        "rss_mb": _peak_rss_mb(),
        "padding": _padding(reader, items, a["batch_size"] if batched else 1),
        "answers": [final_answer(p) for p in preds],
        "ids": [ex.id for ex in examples],
    }
    Path(a["out"]).write_text(json.dumps(row), encoding="utf-8")


def _peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage: Linux carries ru_maxrss across exec, so a worker would
    report its parent's peak (which loaded a model to export it) instead of its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux, bytes on macOS


def _one_at_a_time(reader: Any, items: list, latencies: list[float]) -> tuple[list, float]:
    from tqdm import tqdm

    preds = []
    started = time.perf_counter()
    for item in tqdm(items, unit="q", desc="read", mininterval=1.0, file=sys.stderr):
        t = time.perf_counter()
        preds.append(reader.answer(*item))
        latencies.append(time.perf_counter() - t)
    return preds, time.perf_counter() - started


def _padding(reader: Any, items: list, batch_size: int) -> float:
    """The padding share of the tokens the model read, for the batches answer_batch makes."""
    from spanqa.reading.bucketing import length_batches, padding_fraction
    from spanqa.reading.reader import DEFAULT_DOC_STRIDE

    windows = reader._windower(None, DEFAULT_DOC_STRIDE)([q for q, _ in items], [c for _, c in items])
    lengths = windows.lengths()
    return padding_fraction(lengths, length_batches(lengths, batch_size)) if batch_size > 1 else 0.0


def final_answer(pred: Any) -> str:
    """The answer a caller acts on: the best span's text, or "" for no answer."""
    best = pred.best
    return best.text if best is not None else ""


def _score(rows: dict[str, dict[str, Any]], examples: list) -> None:
    from spanqa.evaluation.metrics import get_raw_scores

    golds = {ex.id: [a.text for a in ex.answers] for ex in examples}
    for row in rows.values():
        preds = dict(zip(row["ids"], row["answers"]))
        exact, f1 = get_raw_scores(golds, preds)
        row["em"] = 100 * float(np.mean(list(exact.values())))
        row["f1"] = 100 * float(np.mean(list(f1.values())))
    reference = next(
        (rows[n] for n in ("onnx-batched", "torch-batched", BASELINE, "onnx-single") if n in rows), None
    )
    for row in rows.values():
        if reference is not None and row["backend"] in INT8_BACKENDS:
            same = [a == b for a, b in zip(row["answers"], reference["answers"])]
            row["agreement"] = 100 * float(np.mean(same))
            row["agreement_with"] = reference["config"]


def cpu_model() -> str:
    """The CPU's name and which of ISA_FLAGS it has: every timing is printed beside them."""
    from spanqa.backends.base import cpu_flags

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        return name
    flags = cpu_flags()
    has = " ".join(f for f in ISA_FLAGS if f in flags) or "none"
    lacks = " ".join(f for f in ISA_FLAGS if f not in flags) or "none"
    return f"{name} (ISA: {has}; lacks: {lacks})"


def format_table(rows: dict[str, dict[str, Any]], opts: BenchOptions, model_dir: Path, n: int) -> str:
    from spanqa.backends.base import cpu_cores

    base = rows.get(BASELINE)
    lines = [
        "| configuration | queries/s | vs torch-single | p50 ms | p95 ms | CPU ms per question | peak RSS MB "
        "| first answer s | F1 | EM | int8 agrees with fp32 | padding |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        speedup = f"{r['qps'] / base['qps']:.2f}x" if base else "-"
        agree = f"{r['agreement']:.1f}%" if "agreement" in r else "-"
        lines.append(
            f"| {name} | {r['qps']:.1f} | {speedup} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} "
            f"| {r['cpu_ms_per_question']:.1f} | {r['rss_mb']:.0f} | {r['first_answer_s']:.2f} "
            f"| {r['f1']:.2f} | {r['em']:.2f} | {agree} "
            f"| {100 * r['padding']:.1f}% |"
        )
    header = [
        "# Throughput: spanqa on CPU",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {cpu_model()}, {cpu_cores()} cores usable, threads: {opts.threads or cpu_cores()}",
        f"- model: {model_dir}",
        f"- data: first {n} questions of {Path(opts.data).name}; batch size {opts.batch_size}",
        f"- python {platform.python_version()}, torch {_installed('torch')}, "
        f"onnxruntime {_installed('onnxruntime')}, openvino {_installed('openvino')}, "
        f"tokenizers {_installed('tokenizers')}",
        "- one-at-a-time rows call `Reader.answer` per question (tokenize, window, forward, decode); batched "
        "rows call `Reader.answer_batch` on all questions. p50/p95: latency of single questions "
        "(one-at-a-time rows only). CPU ms: CPU time of all the process's threads per question (on a shared "
        "machine, the work itself). first answer: process start to the first answer, export cached. "
        "Each row ran in its own process.",
        "",
    ]
    return "\n".join(header + lines) + "\n"


def _installed(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def _every_question_re_read() -> Iterator[None]:
    from spanqa.reading import steps

    saved, steps.FALLBACK_MARGIN = steps.FALLBACK_MARGIN, 1.0
    try:
        yield
    finally:
        steps.FALLBACK_MARGIN = saved


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def record(result: dict[str, Any], card: bool = False) -> str | None:
    """Keep what auto needs (queries/s and F1 per backend) for this model on this machine (and its card)."""
    from spanqa.backends.model_cache import write_json_atomic
    from spanqa.backends.model_dir import update_card
    from spanqa.backends.onnx_backend import CARD_AUTO, bench_file, choose_auto

    best: dict[str, dict[str, float]] = {}
    for r in result["rows"].values():
        seen = best.get(r["backend"])
        if seen is None or r["qps"] > seen["qps"]:
            best[r["backend"]] = {"qps": r["qps"], "f1": r["f1"]}
    choice = choose_auto(best)
    file = bench_file(result["model_dir"])
    if choice and file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(file, {"auto": choice, "measured": best, "cpu": cpu_model(), "at": time.time()})
    if choice and card:
        update_card(result["model_dir"], **{CARD_AUTO: choice})
    return choice


def default_data() -> Path | None:
    """../shared/data/squad-v2.0-dev-half.json beside the checkout, when it is there."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base.parent / "shared" / "data" / "squad-v2.0-dev-half.json"
        if candidate.is_file():
            return candidate
    return None


def write_results(table: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    tmp.write_text(table, encoding="utf-8")
    os.replace(tmp, out)
