"""OpenVINO's activation group size (spanqa.backends.openvino_backend.GROUP_SIZE): speed against agreement.

    python benchmarks/openvino_groups.py [--data runs/data/dev-rest-tune.json] [--limit 600]
                                         [--sizes 32,64,128,192] [--rounds 3]

Each group size gets its own openvino-int8 backend (both its compiled models made under that size), then
all answer the same questions batched, once per round, in alternating order. Agreement: final answers equal
to ONNX Runtime fp32's. Tuning data only: the size is chosen here. Prints one table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from spanqa.backends import openvino_backend
from spanqa.backends.load import load_backend
from spanqa.evaluation.bench import cpu_model, final_answer
from spanqa.evaluation.squad import load_squad
from spanqa.reading.reader import Reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=Path("runs/data/dev-rest-tune.json"))
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--sizes", default="32,64,128,192")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    items = [(e.question, e.context) for e in load_squad(args.data)[: args.limit]]
    reader = Reader.load(args.model, backend="onnx")
    fp32 = [final_answer(p) for p in reader.answer_batch(items)]
    backends = {}
    shipped = openvino_backend.GROUP_SIZE
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            openvino_backend.GROUP_SIZE = size  # read when a model is compiled
            reader.backend = backends[size] = load_backend("openvino-int8", reader.model_dir)
            reader.answer_batch(items[:16])  # compiles the lanes' model now, under this size
    finally:
        openvino_backend.GROUP_SIZE = shipped
    rates: dict[int, list[float]] = {s: [] for s in backends}
    agree: dict[int, float] = {}
    for r in range(args.rounds):
        for size in list(backends) if r % 2 == 0 else list(backends)[::-1]:
            reader.backend = backends[size]
            started = time.perf_counter()
            preds = reader.answer_batch(items)
            rates[size].append(len(items) / (time.perf_counter() - started))
            agree[size] = 100 * float(np.mean([final_answer(p) == a for p, a in zip(preds, fp32)]))
    print(f"# OpenVINO activation group size: {len(items)} questions of {args.data.name}\n")
    print(f"- CPU: {cpu_model()}; batched, medians of {args.rounds} rounds; shipped size {shipped}\n")
    print("| channels per scale | queries/s (median) | each round | same answer as fp32 |")
    print("| ---: | ---: | --- | ---: |")
    for size in backends:
        each = " / ".join(f"{q:.1f}" for q in rates[size])
        print(f"| {size} | {statistics.median(rates[size]):.1f} | {each} | {agree[size]:.1f}% |")


if __name__ == "__main__":
    main()
