"""spanqa against the field's own readers: same model, same questions, same run, one table.

    python benchmarks/peers.py [--venv DIR] [--model DIR] [--data FILE] [--limit 600] [--rounds 3]
        [--spanqa onnx-int8-single,onnx-int8-batched,openvino-int8-single,openvino-int8-batched]
        [--bert-base [--bert-base-limit 200]]

Peers, each one question at a time the way their users call them:
- hf-pipeline: transformers' question-answering pipeline (transformers 4.57; 5.x removed it), torch fp32;
- optimum-ort-pipeline: the same pipeline on optimum's ONNX Runtime model (fp32, optimum's own export);
- haystack-reader: Haystack's ExtractiveReader (haystack-ai 2.x; 3.x removed it).
They run in their own virtualenv (--venv; created on first use with `python3 -m venv` and pip: torch 2.13,
transformers 4.57, then optimum[onnxruntime] and haystack-ai 2.x when they install), so they never touch
spanqa's environment; one line says which peers are missing and why. spanqa's rows run through
`spanqa bench`'s worker.

Each configuration runs in its own process; --rounds repeats all of them, interleaved (the order rotates each
round) and the table shows medians, since a shared machine moves every number. --bert-base adds the same rows
for a BERT-base-shaped model (12 layers, 768 hidden, random weights from its config: its speed is a trained
model's; its F1 is meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from spanqa.backends.base import cpu_cores
from spanqa.backends.model_cache import cache_root
from spanqa.backends.model_dir import read_card, resolve_model
from spanqa.evaluation.bench import (
    CONFIGS,
    BenchOptions,
    cpu_model,
    default_data,
    prepare_exports,
    run_worker,
)
from spanqa.evaluation.metrics import get_raw_scores
from spanqa.evaluation.squad import load_squad

WORKER = Path(__file__).with_name("peers_worker.py")
PEERS = ("hf-pipeline", "optimum-ort-pipeline", "haystack-reader")
# What each peer needs, importable in the peers' virtualenv, and what pip installs for it (in this order).
NEEDS = {
    "hf-pipeline": ("transformers", ["torch==2.13.0", "transformers==4.57.*"]),
    "optimum-ort-pipeline": ("optimum.onnxruntime", ["optimum[onnxruntime]"]),
    # haystack-ai 3.x dropped ExtractiveReader
    "haystack-reader": ("haystack.components.readers, accelerate", ["haystack-ai<3", "accelerate"]),
}
BASE_PEER = "hf-pipeline"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_peers(venv: Path, wanted: tuple[str, ...], install: bool) -> tuple[list[str], list[str]]:
    """The peers that can run from `venv` (created and filled when missing), and why the others cannot."""
    python = venv_python(venv)
    if not python.is_file():
        if not install:
            return [], [f"no virtualenv at {venv} (run without --no-install to create it)"]
        print(f"peers: creating {venv}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ready, missing = [], []
    for peer in wanted:
        module, packages = NEEDS[peer]
        if not _importable(python, module) and install:
            print(f"peers: pip install {' '.join(packages)}", file=sys.stderr, flush=True)
            for package in packages:  # one at a time: torch must come before transformers picks one
                subprocess.run([str(python), "-m", "pip", "install", "-q", package], check=False)
        if _importable(python, module):
            ready.append(peer)
        else:
            missing.append(f"{peer} (cannot import {module} in {venv})")
    return ready, missing


def _importable(python: Path, module: str) -> bool:
    code = f"import {module}"
    return subprocess.run([str(python), "-c", code], capture_output=True, check=False).returncode == 0


def run_peer(
    peer: str, venv: Path, model: Path, data: Path, limit: int, card: dict[str, Any], threads: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spanqa-peer-") as tmp:
        out = Path(tmp) / "result.json"
        args = {
            "config": peer,
            "model": str(model),
            "data": str(data),
            "limit": limit,
            "threads": threads,
            "max_seq_len": int(card.get("max_seq_len") or 384),
            "onnx_dir": str(venv / "spanqa-optimum-exports" / _slug(model)),
            "out": str(out),
        }
        # offline: the model is a local directory; Haystack would otherwise send telemetry
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False"}
        proc = subprocess.run([str(venv_python(venv)), str(WORKER), json.dumps(args)], check=False, env=env)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"peer {peer} failed (exit code {proc.returncode})")
        row = json.loads(out.read_text(encoding="utf-8"))
    lat = sorted(row.pop("latencies"))
    row["p50_ms"] = 1000 * lat[len(lat) // 2]
    row["backend"] = peer
    return row


def _slug(model: Path) -> str:
    import hashlib

    return hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:16]


def run_spanqa(
    config: str, model: Path, data: Path, limit: int, batch_size: int, threads: int
) -> dict[str, Any]:
    opts = BenchOptions(
        model=str(model), data=data, limit=limit, configs=(config,), batch_size=batch_size, threads=threads
    )
    return run_worker(config, model, opts)


def measure(
    model: Path,
    data: Path,
    limit: int,
    rounds: int,
    spanqa: tuple[str, ...],
    peers: list[str],
    venv: Path,
    batch: int,
    threads: int,
    failed: list[str],
) -> dict[str, dict[str, Any]]:
    """Every configuration `rounds` times, the order rotated each round; medians per configuration."""
    if any(CONFIGS[c][0] != "torch" for c in spanqa):
        prepare_exports(model, spanqa)
    card = read_card(model)
    order = [*peers, *spanqa]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in order}
    for r in range(rounds):
        shift = r % len(order)
        for config in list(order[shift:] + order[:shift]):
            print(f"peers: round {r + 1}/{rounds}: {config} ...", file=sys.stderr, flush=True)
            if config in PEERS:
                try:
                    runs[config].append(run_peer(config, venv, model, data, limit, card, threads))
                except RuntimeError as e:  # a peer that breaks is reported, not fatal to the table
                    failed.append(str(e))
                    order.remove(config)
                    del runs[config]
            else:
                runs[config].append(run_spanqa(config, model, data, limit, batch, threads))
    examples = load_squad(data)[:limit]
    golds = {ex.id: [a.text for a in ex.answers] for ex in examples}
    rows = {}
    for config, done in runs.items():
        last = done[-1]
        exact, f1 = get_raw_scores(golds, dict(zip(last["ids"], last["answers"])))
        p50s = [d["p50_ms"] for d in done if d.get("p50_ms") is not None]
        rows[config] = {
            "qps": statistics.median(d["qps"] for d in done),
            "qps_all": [round(d["qps"], 1) for d in done],
            "p50_ms": statistics.median(p50s) if p50s else None,
            "cpu_ms": statistics.median(d["cpu_ms_per_question"] for d in done),
            "f1": 100 * sum(f1.values()) / len(f1),
            "em": 100 * sum(exact.values()) / len(exact),
            "answers": last["answers"],
            "versions": last.get("versions"),
        }
    return rows


def table(title: str, rows: dict[str, dict[str, Any]], reference: str | None) -> list[str]:
    base = rows.get(BASE_PEER)
    ref = rows.get(reference) if reference else None
    lines = [
        f"### {title}",
        "",
        f"| configuration | queries/s (median) | each round | vs {BASE_PEER} | p50 ms | CPU ms per question "
        f"| CPU time vs {BASE_PEER} | F1 | EM | same answer as {reference or '-'} |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        ratio = f"{r['qps'] / base['qps']:.2f}x" if base else "-"
        cpu_ratio = f"{base['cpu_ms'] / r['cpu_ms']:.2f}x" if base else "-"
        p50 = f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "-"
        same = "-"
        if ref is not None and name != reference:
            agree = sum(a == b for a, b in zip(r["answers"], ref["answers"])) / len(ref["answers"])
            same = f"{100 * agree:.1f}%"
        lines.append(
            f"| {name} | {r['qps']:.1f} | {' / '.join(map(str, r['qps_all']))} | {ratio} | {p50} "
            f"| {r['cpu_ms']:.1f} | {cpu_ratio} "
            f"| {r['f1']:.2f} | {r['em']:.2f} | {same} |"
        )
    return lines


def bert_base_model() -> Path:
    """A BERT-base-shaped question-answering model with random weights and spanqa's WordPiece tokenizer."""
    out = cache_root() / "bench-models" / "bert-base-random"
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    BertForQuestionAnswering(config).eval().save_pretrained(tmp)
    shipped = resolve_model(None)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (shipped / name).is_file():
            shutil.copy(shipped / name, tmp / name)
    (tmp / "spanqa.json").write_text(
        json.dumps({"name": "bert-base-shaped, random weights", "max_seq_len": 384})
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--venv", type=Path, default=cache_root() / "peers-venv", help="the peers' virtualenv"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never create the virtualenv or pip install"
    )
    parser.add_argument("--model", default=None, help="model directory (default: spanqa's shipped model)")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every configuration (default: all cores); 1 makes the CPU-time column the work "
        "itself on a shared machine",
    )
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument(
        "--spanqa", default="onnx-int8-single,onnx-int8-batched,openvino-int8-single,openvino-int8-batched"
    )
    parser.add_argument("--bert-base", action="store_true", help="also time a BERT-base-shaped model")
    parser.add_argument("--bert-base-limit", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.data is None or not args.data.is_file():
        parser.error("no --data given and ../shared/data/squad-v2.0-dev-half.json not found")
    spanqa = tuple(c for c in args.spanqa.split(",") if c)
    wanted = tuple(p for p in args.peers.split(",") if p)
    unknown = [c for c in spanqa if c not in CONFIGS] + [p for p in wanted if p not in PEERS]
    if unknown:
        parser.error(f"unknown configurations {unknown}")
    from spanqa.reading.bucketing import BATCH_SIZE

    batch = args.batch_size or BATCH_SIZE
    threads = args.threads or cpu_cores()
    peers, missing = ensure_peers(args.venv, wanted, not args.no_install)
    print(f"peers: missing: {'; '.join(missing) if missing else 'none'}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    models = [("shipped model", resolve_model(args.model), args.limit)]
    if args.bert_base:
        models.append(("BERT-base-shaped, random weights", bert_base_model(), args.bert_base_limit))
    sections, versions = [], {}
    for title, model, limit in models:
        rows = measure(
            model, args.data, limit, args.rounds, spanqa, peers, args.venv, batch, threads, missing
        )
        versions.update({k: v for r in rows.values() for k, v in (r["versions"] or {}).items()})
        reference = "onnx-single" if "onnx-single" in rows else None
        sections += [*table(f"{title}: {model.name}, first {limit} questions", rows, reference), ""]
    load_after = os.getloadavg()
    from importlib.metadata import version

    header = [
        "# spanqa against its peers",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {cpu_model()}, {cpu_cores()} cores usable, {threads} thread(s) per configuration",
        f"- load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} (a shared machine: "
        f"medians of {args.rounds} interleaved rounds)",
        f"- data: {args.data.name}; spanqa batch size {batch}; peers one question at a time, "
        "handle_impossible_answer / no_answer on, same max_seq_len and doc_stride 128",
        f"- spanqa env: python {platform.python_version()}, onnxruntime {version('onnxruntime')}, "
        f"openvino {version('openvino')}, torch "
        f"{version('torch')}; peers env: {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))}",
        f"- peers missing: {'; '.join(missing) if missing else 'none'}",
        f"- command: python benchmarks/peers.py {' '.join(sys.argv[1:])}",
        "",
    ]
    text = "\n".join(header + sections)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
