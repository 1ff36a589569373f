"""ONNX Runtime int8 on this machine: intra-op threads sleeping or spinning 50 us (SPANQA_ONNX_SPIN_US),
batches split into one-thread lanes or not; all four combinations interleaved in one run, rounds in
alternating order. Prints one table.

    python benchmarks/onnx_threads.py [--data dev-half.json] [--limit 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import spanqa.backends.onnx_backend as onnx_backend
from spanqa import Reader
from spanqa.evaluation.bench import cpu_model
from spanqa.evaluation.squad import load_squad

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad-v2.0-dev-half.json"


SPIN_US = 50  # the value docs/onnx.md suggests for a machine the reader has to itself


def load(spinning: bool, lanes: bool, warm: list) -> Reader:
    os.environ[onnx_backend.SPIN_ENV] = str(SPIN_US if spinning else 0)  # read when the session is made
    reader = Reader.load(None, backend="onnx-int8")
    if reader.backend.fallback is not None:  # the fp32 re-read's session, made now under this setting
        reader.backend.fallback()
    if not lanes:
        reader.backend.lanes = 1
    reader.answer_batch(warm)
    return reader


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SQuAD-format file (SQuAD 2.0 dev)")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"onnx_threads: {args.data} not found; give --data (the SQuAD 2.0 dev set)")
    items = [(e.question, e.context) for e in load_squad(args.data)[: args.limit]]
    readers = {(s, lane): load(s, lane, items[:16]) for s in (False, True) for lane in (True, False)}
    batched: dict = {k: [] for k in readers}
    p50: dict = {k: [] for k in readers}
    for r in range(args.rounds):
        for key, reader in list(readers.items())[:: 1 if r % 2 == 0 else -1]:
            t = time.perf_counter()
            reader.answer_batch(items, batch_size=8)
            batched[key].append(len(items) / (time.perf_counter() - t))
            latencies = []
            for question, context in items[:100]:
                t = time.perf_counter()
                reader.answer(question, context)
                latencies.append(time.perf_counter() - t)
            p50[key].append(1000 * statistics.median(latencies))
    print(f"onnx-int8, {cpu_model()}, {args.limit} questions, {args.rounds} interleaved rounds")
    print(
        f"| threads spin {SPIN_US} us | lanes for batches | batched q/s (rounds) | single p50 ms (rounds) |"
    )
    print("| --- | --- | --- | --- |")
    for (spin, lanes), qps in batched.items():
        rounds_qps = " / ".join(f"{x:.1f}" for x in qps)
        rounds_p50 = " / ".join(f"{x:.1f}" for x in p50[(spin, lanes)])
        print(f"| {spin} | {lanes} | {rounds_qps} | {rounds_p50} |")


if __name__ == "__main__":
    main()
