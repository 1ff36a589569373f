"""Local `Reader.answer_batch` against the same questions answered on Ray, on the same cores, interleaved.

    python benchmarks/ray_predict.py [--model DIR] [--backend auto] [--data FILE] [--limit 1000]
                                     [--rounds 2] [--cpus 2] [--layouts 2x1,1x2] [--questions-per-task 64]

One process: Ray is started with `--cpus` CPUs (`ray.init(num_cpus=...)`), the local reader runs on as many
threads. Each round runs every configuration once, in a shuffled order, so that other load on the machine
hits all alike; the table shows medians. A Ray run is a whole job: a fresh pool of workers each loading the
model, the questions spread as 64-row tasks, the answers gathered in input order on the driver. A layout WxT
is W workers of T threads each. Predictions of the first Ray run are compared with the local ones.
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
    p.add_argument("--backend", default="auto")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=1000, help="the first N questions")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="CPUs for Ray, threads for the local reader")
    p.add_argument("--layouts", default="2x1", help="Ray workers x threads each, comma-separated")
    p.add_argument("--questions-per-task", type=int, default=64)
    args = p.parse_args(argv)

    import ray

    from spanqa import Reader
    from spanqa.cluster.ray_predict import ClusterOptions, answer_dataset, resolve_backend
    from spanqa.cluster.rows import ReadOptions, local_record
    from spanqa.evaluation.squad import load_squad

    examples = load_squad(args.data)[: args.limit]
    rows = [{"id": ex.id, "question": ex.question, "context": ex.context} for ex in examples]
    items = [(ex.question, ex.context) for ex in examples]
    backend = resolve_backend(args.model, args.backend)
    ray_batch = ReadOptions().for_backend(backend)["batch_size"]  # windows per pass on the workers

    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # as `predict --ray` writes
    started = time.perf_counter()
    reader = Reader.load(args.model, backend=backend, threads=args.cpus)
    local_load = time.perf_counter() - started
    reader.answer_batch(items[:8])  # warm-up: first-call allocations

    def local(batch_size: int):
        return lambda: {"preds": reader.answer_batch(items, batch_size=batch_size)}

    def on_ray(workers: int, threads: int):
        def run():
            cluster = ClusterOptions(workers, threads, args.questions_per_task)
            ds = ray.data.from_items(rows)
            first = None
            records = []
            began = time.perf_counter()
            out = answer_dataset(ds, args.model, backend, cluster=cluster)
            for table in out.iter_batches(batch_size=None, batch_format="pyarrow"):
                first = first or time.perf_counter() - began
                records += table.to_pylist()
            return {"records": records, "first": first}

        return run

    configs = {f"local, batch {ray_batch}": local(ray_batch)}
    if ray_batch != 8:
        configs["local, batch 8 (library default)"] = local(8)
    for layout in args.layouts.split(","):
        w, t = (int(x) for x in layout.split("x"))
        configs[f"Ray, {w} worker(s) x {t} thread(s)"] = on_ray(w, t)
    times: dict[str, list[float]] = {name: [] for name in configs}
    firsts: dict[str, list[float]] = {name: [] for name in configs}
    outputs: dict[str, dict] = {}
    order = list(configs)
    for round_ in range(args.rounds):
        random.Random(round_).shuffle(order)
        for name in order:
            began = time.perf_counter()
            result = configs[name]()
            times[name].append(time.perf_counter() - began)
            if result.get("first"):
                firsts[name].append(result["first"])
            outputs.setdefault(name, result)
            print(f"round {round_ + 1}: {name}: {len(items) / times[name][-1]:.1f} q/s", file=sys.stderr)

    local_name = f"local, batch {ray_batch}"
    reference = {ex.id: {"id": ex.id, **p.to_dict()} for ex, p in zip(examples, outputs[local_name]["preds"])}
    base = statistics.median(times[local_name])
    print(f"{len(items)} questions of {args.data.name}, backend {backend}, {args.cpus} CPUs, ", end="")
    print(f"{args.rounds} rounds")
    print(
        f"one-off: ray.init {ray_start:.1f} s; local Reader.load {local_load:.1f} s (not in the times below)"
    )
    print()
    print("| configuration | seconds (median) | questions/s | vs local | first answers | answers = local |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in configs:
        wall = statistics.median(times[name])
        first = f"{statistics.median(firsts[name]):.1f} s" if firsts[name] else ""
        if "records" in outputs[name]:
            got = {r["id"]: local_record(r) for r in outputs[name]["records"]}
            same = sum(got.get(k) == v for k, v in reference.items())
            agree = f"{same}/{len(reference)} identical"
        else:
            preds = outputs[name]["preds"]
            same = sum(
                [(a.text, a.start, a.end) for a in p.answers]
                == [(a["text"], a["start"], a["end"]) for a in reference[ex.id]["answers"]]
                and p.no_answer == reference[ex.id]["no_answer"]
                for ex, p in zip(examples, preds)
            )
            agree = f"{same}/{len(reference)} same answer" if name != local_name else "(reference)"
        print(f"| {name} | {wall:.1f} | {len(items) / wall:.1f} | {base / wall:.2f} | {first} | {agree} |")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
