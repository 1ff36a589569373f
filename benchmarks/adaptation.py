"""Domain adaptation: EM/F1 on TyDi QA (English) before and after fine-tuning on 500 in-domain examples.

    python benchmarks/adaptation.py [--model DIR] [--data-dir ../shared/data]

Evaluates --model on tydiqa-en-dev.json, continues training it (`spanqa train --base MODEL --train
tydiqa-en-train.json --max-examples 500 ...`), evaluates the result the same way, and prints one table.
TyDi's gold passages always hold the answer, so the main columns answer every question ("top answer");
the model's own no-answer threshold is shown beside them. The adapted model is written to a temporary
directory unless --out is given. Defaults fit in about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
TYDI_FILES = ("tydiqa-en-train.json", "tydiqa-en-dev.json")
# Where they come from: the English questions of TyDi QA's gold-passage task, in SQuAD format.
TYDI_SOURCE = "English TyDi QA GoldP from https://github.com/google-research-datasets/tydiqa, in SQuAD format"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="the model to adapt (default: spanqa's shipped model)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA if DEFAULT_DATA.is_dir() else None,
        help=f"folder with tydiqa-en-train.json and tydiqa-en-dev.json (default: {DEFAULT_DATA})",
    )
    p.add_argument("--train-examples", type=int, default=500, help="in-domain training questions")
    # Continuing from a trained QA model: a small learning rate and a few passes adapt it without
    # wiping out what it learned on SQuAD (1e-4, the from-scratch default, forgets more than it gains).
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seq-len", type=int, help="training window (default: the model card's, else 256)")
    p.add_argument("--doc-stride", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dev-limit", type=int, help="evaluate on the first N dev questions only (smoke runs)")
    p.add_argument("--batch-size-eval", type=int, default=8)
    p.add_argument("--out", type=Path, help="keep the adapted model here (default: a temporary directory)")
    p.add_argument("--results", type=Path, help="also write the table's numbers as JSON")
    args = p.parse_args(argv)
    wanted = [args.data_dir / name for name in TYDI_FILES] if args.data_dir else []
    if not wanted or not all(f.is_file() for f in wanted):
        where = f"{args.data_dir} lacks {' or '.join(TYDI_FILES)}" if args.data_dir else f"no {DEFAULT_DATA}"
        p.exit(2, f"{p.prog}: error: {where}: pass --data-dir DIR holding them ({TYDI_SOURCE})\n")
    return args


def evaluate(model_dir: Path, examples: list, max_seq_len: int, batch_size: int) -> dict:
    """EM/F1 of the top answer and at the model's threshold, on the same windows for every model."""
    from spanqa import Reader
    from spanqa.evaluation.evaluate import decided, evaluate_results, read_questions

    started = time.time()
    reader = Reader.load(model_dir)
    results = read_questions(reader, examples, batch_size=batch_size, progress=True, max_seq_len=max_seq_len)
    seconds = time.time() - started
    results = decided(results, reader.calibration)  # at the card's default prior
    at_threshold = evaluate_results(results, reader.calibration)
    top = evaluate_results(decided(results, reader.calibration, threshold=-math.inf), reader.calibration)
    return {
        "top_exact": top["exact"],
        "top_f1": top["f1"],
        "exact": at_threshold["exact"],
        "f1": at_threshold["f1"],
        "answered": 100.0 * sum(not r.no_answer for r in results) / len(results),
        "prior": reader.answerable_prior,
        "ece": top["span_ece"],
        "eval_s": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from spanqa.backends.model_dir import read_card, resolve_model
    from spanqa.evaluation.squad import load_squad
    from spanqa.training.loop import TrainConfig, train

    base = resolve_model(args.model)
    train_file, dev_file = args.data_dir / "tydiqa-en-train.json", args.data_dir / "tydiqa-en-dev.json"
    dev = load_squad(dev_file)[: args.dev_limit]
    # the adapted model keeps the base's window length, so both are read (and compared) the same way
    max_seq_len = args.max_seq_len or int(read_card(base).get("max_seq_len") or 256)

    rows = {"before": evaluate(base, dev, max_seq_len, args.batch_size_eval)}
    with tempfile.TemporaryDirectory(prefix="spanqa-adapt-") as tmp:
        out = args.out or Path(tmp) / "adapted"
        cfg = TrainConfig(
            base=str(base),
            train=[str(train_file)],
            out=str(out),
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            max_seq_len=max_seq_len,
            doc_stride=args.doc_stride,
            max_examples=args.train_examples,
            seed=args.seed,
            keep_checkpoint=False,  # a throw-away model: leave no run state in the cache
        )
        started = time.time()
        train(cfg)
        train_s = time.time() - started
        rows["after"] = evaluate(out, dev, max_seq_len, args.batch_size_eval)
        rows["after"]["train_s"] = train_s

    print_table(rows, base, len(dev), args)
    if args.results:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2), encoding="utf-8")
    return 0


def print_table(rows: dict, base: Path, n_dev: int, args: argparse.Namespace) -> None:
    print(
        f"\nTyDi QA English dev ({n_dev} questions, all answerable); adapted on {args.train_examples} "
        f"train questions, {args.epochs:g} epochs, lr {args.lr:g}; base {base}"
    )
    header = (
        f"{'model':<8} {'EM top':>7} {'F1 top':>7} {'EM dec':>7} {'F1 dec':>7} {'answered':>9} "
        f"{'ECE':>6} {'train s':>8} {'eval s':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        train_s = f"{r['train_s']:.0f}" if "train_s" in r else "-"
        print(
            f"{name:<8} {r['top_exact']:7.2f} {r['top_f1']:7.2f} {r['exact']:7.2f} {r['f1']:7.2f} "
            f"{r['answered']:8.1f}% {r['ece']:6.3f} {train_s:>8} {r['eval_s']:7.0f}"
        )
    print(
        "top: the top answer of every question; dec: decided at the card's default answerable prior "
        f"(before {rows['before']['prior']:.2f}, after {rows['after']['prior']:.2f}); ECE: span scores"
    )


if __name__ == "__main__":
    sys.exit(main())
