"""One question at a time while other processes keep the cores busy: which backend suffers most.

    python benchmarks/busy_neighbours.py [--data dev-half.json] [--limit 150] [--rounds 2]
                                         [--backends onnx-int8,onnx-int8@spin,openvino-int8] [--busy 0,1,2]

A service rarely has its cores to itself. Runtimes whose threads busy-wait between operators are fastest on
an idle machine and slowest beside other work, since a waiting thread holds a core a neighbour wants. For each
number of neighbours (processes spinning in a Python loop), every backend answers the same questions one at
a time, interleaved, rounds in alternating order; the table shows median p50 latency. onnx-int8@spin is
onnx-int8 with SPANQA_ONNX_SPIN_US=50, NAME@1thread the backend with one thread. Batched: queries/s of
`answer_batch` on the same questions. Compare rows of one run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import spanqa.backends.onnx_backend as onnx_backend
from spanqa import Reader
from spanqa.evaluation.bench import cpu_model
from spanqa.evaluation.squad import load_squad

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad-v2.0-dev-half.json"
SPIN_US = 50


def load(name: str) -> Reader:
    backend, _, how = name.partition("@")
    os.environ[onnx_backend.SPIN_ENV] = str(SPIN_US if how == "spin" else 0)  # read when sessions are made
    reader = Reader.load(None, backend=backend, threads=1 if how == "1thread" else None)
    fallback = getattr(reader.backend, "fallback", None)
    if fallback is not None:  # the fp32 re-read's session, made now under this setting
        fallback()
    return reader


def p50_ms(reader: Reader, items: list[tuple[str, str]]) -> float:
    times = []
    for item in items:
        started = time.perf_counter()
        reader.answer(*item)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def batched_qps(reader: Reader, items: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    reader.answer_batch(items)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="onnx-int8,onnx-int8@spin,openvino-int8")
    parser.add_argument("--busy", default="0,1,2", help="numbers of busy neighbour processes")
    args = parser.parse_args()
    items = [(e.question, e.context) for e in load_squad(args.data)[: args.limit]]
    names = args.backends.split(",")
    readers = {name: load(name) for name in names}
    for reader in readers.values():
        for item in items[:5]:  # warm-up
            reader.answer(*item)
    counts = [int(b) for b in args.busy.split(",")]
    got: dict[tuple[str, int], list[float]] = {(n, b): [] for n in names for b in counts}
    qps: dict[tuple[str, int], list[float]] = {(n, b): [] for n in names for b in counts}
    for busy in counts:
        neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(0.5)
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    got[name, busy].append(p50_ms(readers[name], items))
                    qps[name, busy].append(batched_qps(readers[name], items))
                    print(
                        f"busy {busy}, round {r + 1}: {name} {got[name, busy][-1]:.1f} ms, "
                        f"{qps[name, busy][-1]:.1f} q/s batched",
                        file=sys.stderr,
                    )
        finally:
            for p in neighbours:
                p.kill()
    print(f"# One question at a time beside busy processes: {len(items)} questions of {args.data.name}\n")
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} cores; medians of {args.rounds} rounds of p50 latency")
    print(f"- command: python benchmarks/busy_neighbours.py {' '.join(sys.argv[1:])}\n")
    print(
        "| backend | "
        + " | ".join(f"p50 ms, {b} busy" for b in counts)
        + " | "
        + " | ".join(f"batched q/s, {b} busy" for b in counts)
        + " |"
    )
    print("| --- |" + " ---: |" * (2 * len(counts)))
    for name in names:
        cells = [f"{statistics.median(got[name, b]):.1f}" for b in counts]
        cells += [f"{statistics.median(qps[name, b]):.1f}" for b in counts]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
