"""Which batch size for Reader.answer_batch: queries/s per batch size, in one process, interleaved.

    python benchmarks/batch_size.py [--model DIR] [--backend onnx-int8] [--data FILE] [--limit 300]
                                    [--sizes 1,4,8,16,32,64] [--repeats 3]

Every size runs once per round, in a different order each round, and the table shows the median over rounds,
so that a burst of other load on the machine hits all sizes alike. Compare rows of one run only.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad-v2.0-dev-half.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--backend", default="onnx-int8")
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"SQuAD-format file (default: {DEFAULT_DATA})"
    )
    p.add_argument("--limit", type=int, default=300, help="the first N questions")
    p.add_argument("--sizes", default="1,4,8,16,32,64", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all sizes")
    args = p.parse_args(argv)

    from spanqa import Reader
    from spanqa.evaluation.squad import load_squad, missing_file

    if not args.data.is_file():
        p.exit(2, f"{p.prog}: error: {missing_file(args.data)}\n")

    sizes = [int(s) for s in args.sizes.split(",")]
    items = [(ex.question, ex.context) for ex in load_squad(args.data)[: args.limit]]
    reader = Reader.load(args.model, backend=args.backend)
    reader.answer_batch(items[:8])  # warm-up: first-call allocations
    rates: dict[int, list[float]] = {s: [] for s in sizes}
    order = list(sizes)
    for round_ in range(args.repeats):
        random.Random(round_).shuffle(order)
        for size in order:
            started = time.perf_counter()
            reader.answer_batch(items, batch_size=size)
            rates[size].append(len(items) / (time.perf_counter() - started))
            print(f"round {round_ + 1}: batch {size}: {rates[size][-1]:.1f} q/s", file=sys.stderr)
    best = max(statistics.median(r) for r in rates.values())
    print(f"{len(items)} questions of {args.data.name}, backend {reader.backend.name}, {args.repeats} rounds")
    print()
    print("| batch size | queries/s (median) | vs best |")
    print("| ---: | ---: | ---: |")
    for size in sizes:
        rate = statistics.median(rates[size])
        print(f"| {size} | {rate:.1f} | {rate / best:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
