"""The HTTP service under load: N concurrent clients on loopback, against offline batched throughput.

    python benchmarks/load.py [--model DIR] [--backends torch,onnx-int8] [--data FILE] [--questions 1000]
                              [--clients 32] [--duration 60] [--warmup 5]

For each backend, in one run: first the offline throughput of Reader.answer_batch on the questions (the
ceiling: no HTTP, every window batched by length), then `spanqa serve` is started in a subprocess and
--clients clients each send one POST /v1/answer at a time, round-robin over the same questions, for
--duration seconds after --warmup seconds. One table: queries/s, p50/p99 latency, errors, the share of the
offline throughput reached, and the mean number of questions per model call (micro-batching at work).

The clients are a few lines of raw HTTP/1.1 over keep-alive asyncio connections, not an HTTP library:
they share the machine's cores with the server, so they must cost it as little CPU as possible.
Compare rows of one run only: other load on the machine moves all numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad-v2.0-dev-half.json"
TARGET_P99_MS = 500.0
TARGET_SHARE = 0.8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--backends", default="torch", help="comma-separated: torch, onnx, onnx-int8, auto")
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"SQuAD-format file (default: {DEFAULT_DATA})"
    )
    p.add_argument("--questions", type=int, default=1000, help="the first N questions of --data")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    p.add_argument("--max-batch", type=int, default=32, help="the server's questions per model call")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="the server's wait to fill a batch")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass, offline")
    p.add_argument(
        "--request-timeout", type=float, default=30.0, help="a client gives up (an error) after this"
    )
    args = p.parse_args(argv)
    if not args.data.is_file():
        from spanqa.evaluation.squad import missing_file

        p.exit(2, f"{p.prog}: error: {missing_file(args.data)}\n")
    if args.clients < 1 or args.duration <= 0 or args.questions < 1:
        p.error("--clients and --questions must be >= 1 and --duration > 0")
    return args


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from spanqa.evaluation.squad import load_squad

    examples = load_squad(args.data)[: args.questions]
    bodies = [json.dumps({"question": ex.question, "context": ex.context}).encode() for ex in examples]
    rows = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        offline = offline_throughput(args, backend, [(ex.question, ex.context) for ex in examples])
        print(f"[{backend}] offline answer_batch: {offline:.1f} q/s", file=sys.stderr, flush=True)
        result, per_call = serve_and_load(args, backend, bodies)
        rows.append(row(backend, args, offline, result, per_call))
    print(table(rows, args, len(examples)))
    return 0


def offline_throughput(args: argparse.Namespace, backend: str, items: list[tuple[str, str]]) -> float:
    from spanqa import Reader

    reader = Reader.load(args.model, backend=backend)
    reader.answer_batch(items[: args.batch_size], batch_size=args.batch_size)  # warm-up
    began = time.perf_counter()
    reader.answer_batch(items, batch_size=args.batch_size)
    seconds = time.perf_counter() - began
    del reader  # the server gets the memory and the cores
    return len(items) / seconds


def serve_and_load(args: argparse.Namespace, backend: str, bodies: list[bytes]) -> tuple[LoadResult, float]:
    from spanqa.cli.serve import child_server

    serve = [
        "--backend",
        backend,
        "--max-batch",
        str(args.max_batch),
        "--batch-wait-ms",
        str(args.batch_wait_ms),
    ]
    serve += ["--timeout", str(args.request_timeout), "--max-queue", str(max(256, 2 * args.clients))]
    if args.model:
        serve += ["--model", args.model]
    with child_server(serve) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        before = health(host, int(port))
        result = asyncio.run(load(host, int(port), bodies, args))
        after = health(host, int(port))
    calls = after["model_calls"] - before["model_calls"]
    per_call = (after["questions"] - before["questions"]) / calls if calls else 0.0
    return result, per_call


def health(host: str, port: int) -> dict:
    async def get() -> dict:
        reader, writer = await asyncio.open_connection(host, port)
        _, body = await http(reader, writer, b"GET", b"/healthz", b"")
        writer.close()
        return json.loads(body)

    return asyncio.run(get())


async def http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: bytes, path: bytes, body: bytes
) -> tuple[int, bytes]:
    head = b"%s %s HTTP/1.1\r\nHost: load\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    writer.write(head % (method, path, len(body)) + body)
    status = int((await reader.readline()).split(b" ", 2)[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def load(host: str, port: int, bodies: list[bytes], args: argparse.Namespace) -> LoadResult:
    result = LoadResult()
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop = measure_from + args.duration
    counter = iter(range(10**12))

    async def client() -> None:
        conn = None
        while (now := time.perf_counter()) < stop:
            body = bodies[next(counter) % len(bodies)]
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                status, _ = await asyncio.wait_for(
                    http(*conn, b"POST", b"/v1/answer", body), args.request_timeout
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
                if now >= measure_from:
                    result.error(type(e).__name__)
                conn = None
                continue
            done = time.perf_counter()
            if now >= measure_from and done <= stop:
                if status == 200:
                    result.latencies.append(done - now)
                else:
                    result.error(f"HTTP {status}")
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(client() for _ in range(args.clients)))
    result.seconds = args.duration
    return result


def row(backend: str, args: argparse.Namespace, offline: float, r: LoadResult, per_call: float) -> dict:
    lat = np.asarray(r.latencies) * 1000 if r.latencies else np.asarray([np.nan])
    qps = len(r.latencies) / r.seconds
    return {
        "backend": backend,
        "clients": args.clients,
        "offline q/s": offline,
        "served q/s": qps,
        "share": qps / offline,
        "p50 ms": float(np.percentile(lat, 50)),
        "p99 ms": float(np.percentile(lat, 99)),
        "errors": r.errors,
        "q/call": per_call,
        "error kinds": ", ".join(f"{k}: {n}" for k, n in r.error_kinds.items()),
    }


def table(rows: list[dict], args: argparse.Namespace, questions: int) -> str:
    from spanqa.backends.onnx_backend import cpu_cores
    from spanqa.evaluation.bench import cpu_model

    cpu = cpu_model()
    lines = [
        f"Load test: {args.clients} clients for {args.duration:g} s (after {args.warmup:g} s warm-up), "
        f"{questions} questions round-robin; {cpu_cores()} cores usable, {cpu}",
        "",
        "| backend | clients | offline q/s | served q/s | % of offline | p50 ms | p99 ms | errors "
        "| q/model call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['clients']} | {r['offline q/s']:.1f} | {r['served q/s']:.1f} | "
            f"{100 * r['share']:.0f}% | {r['p50 ms']:.0f} | {r['p99 ms']:.0f} | {r['errors']} "
            f"| {r['q/call']:.1f} |"
        )
    lines.append("")
    for r in rows:
        ok = r["errors"] == 0 and r["p99 ms"] <= TARGET_P99_MS and r["share"] >= TARGET_SHARE
        verdict = "meets" if ok else "misses"
        lines.append(
            f"{r['backend']}: {verdict} the targets (0 errors, p99 <= {TARGET_P99_MS:g} ms, "
            f">= {100 * TARGET_SHARE:.0f}% of offline)"
            + (f"; errors: {r['error kinds']}" if r["errors"] else "")
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
