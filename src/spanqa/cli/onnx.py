"""`spanqa export` (a model to ONNX, fp32 and int8) and `spanqa bench` (the throughput benchmark)."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from spanqa.errors import InputError
from spanqa.reading.bucketing import BATCH_SIZE

# Copied beside the ONNX files so that the output directory is a model torch is not needed for.
_COMPANION_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--int8", action="store_true", help="also write the int8 (dynamically quantized) model")
    p.add_argument(
        "--out", required=True, help="output directory: model.onnx, model-int8.onnx, export.json, tokenizer"
    )


def _export(args: argparse.Namespace) -> int:
    from spanqa.backends.export import export_onnx
    from spanqa.backends.model_cache import weight_files
    from spanqa.backends.model_dir import CARD_NAME, check_weights, resolve_model
    from spanqa.cli.feedback import Activity

    model_dir = resolve_model(args.model)
    out = Path(args.out)
    if out.resolve() == model_dir.resolve():
        raise InputError("--out must be another directory than the model's")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file")
    if out.is_dir() and weight_files(out):
        raise InputError(f"--out {out} holds model weights; choose an empty or export directory")
    check_weights(model_dir)
    with Activity("exporting to ONNX and checking it against PyTorch"):  # tens of seconds
        report = export_onnx(model_dir, out, int8=args.int8)
    for name in (*_COMPANION_FILES, CARD_NAME):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    for kind in ("fp32", "int8"):
        if kind in report:
            r = report[kind]
            extra = f", best tokens agree {100 * r['best_token_agreement']:.0f}%" if kind == "int8" else ""
            print(f"{kind}: max logit difference to PyTorch {r['max_logit_diff']:.2g}{extra}")
    print(f"written to {out} (load it with --model {out} --backend onnx{'-int8' if args.int8 else ''})")
    return 0


def _add_bench(p: argparse.ArgumentParser) -> None:
    from spanqa.evaluation.bench import CONFIGS, DEFAULT_CONFIGS

    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--data", help="SQuAD-format file (default: ../shared/data/squad-v2.0-dev-half.json)")
    p.add_argument("--limit", type=int, default=1000, help="first N questions (default 1000)")
    p.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated, or 'all': {', '.join(CONFIGS)}",
    )
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="windows per forward pass")
    p.add_argument("--threads", type=int, help="threads per configuration (default: the usable cores)")
    p.add_argument("--out", default="benchmarks/results/throughput.md", help="markdown results file")
    p.add_argument(
        "--record",
        action="store_true",
        help="remember the fastest configuration within 0.5 F1 of fp32: backend=auto then uses it here",
    )
    p.add_argument(
        "--record-card", action="store_true", help="with --record: also write it in the model card"
    )


def _bench(args: argparse.Namespace) -> int:
    from spanqa.evaluation.bench import (
        BenchOptions,
        default_data,
        parse_configs,
        record,
        run_bench,
        write_results,
    )

    if args.limit < 1 or args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        raise InputError("--limit, --batch-size and --threads must be positive")
    data = Path(args.data) if args.data else default_data()
    if data is None:
        from spanqa.evaluation.squad import missing_file

        raise InputError(missing_file("../shared/data/squad-v2.0-dev-half.json"))
    opts = BenchOptions(
        model=args.model,
        data=data,
        limit=args.limit,
        configs=parse_configs(args.configs),
        batch_size=args.batch_size,
        threads=args.threads,
        out=Path(args.out),
    )
    result = run_bench(opts)
    print(result["table"])
    write_results(result["table"], opts.out)
    print(f"written to {opts.out}", file=sys.stderr)
    if args.record or args.record_card:
        choice = record(result, card=args.record_card)
        print(f"backend=auto now uses: {choice or 'unchanged (no fp32 row measured)'}", file=sys.stderr)
    return 0


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "export": (_add_export, _export, "export a model to ONNX (fp32, and int8 with --int8), verified"),
    "bench": (_add_bench, _bench, "measure queries/s, latency, memory and F1 of each backend"),
}
