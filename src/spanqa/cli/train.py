"""`spanqa train` (fine-tuning, resumable) and `spanqa split` (a SQuAD file in two by article)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="model directory to start from (an encoder or a QA model)")
    p.add_argument(
        "--train",
        required=True,
        nargs="+",
        metavar="FILE",
        help="SQuAD-format files; FILE@N samples N questions, FILE*R repeats the file R times",
    )
    p.add_argument("--tune", metavar="FILE", help="after training, tune threshold and calibration on FILE")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=256)
    p.add_argument("--doc-stride", type=int, default=96)
    p.add_argument("--max-examples", type=int)
    p.add_argument(
        "--negatives",
        type=float,
        default=0.0,
        help="synthetic unanswerable examples per answerable one (another paragraph of the article)",
    )
    p.add_argument(
        "--drop-negatives",
        type=float,
        default=0.0,
        help="negatives per answerable question made by removing the answer's sentences",
    )
    p.add_argument(
        "--perturb-negatives",
        type=float,
        default=0.0,
        help="negatives per answerable question made by changing the question (negation, antonym, "
        "number or name the paragraph lacks)",
    )
    p.add_argument(
        "--null-weight",
        type=float,
        default=1.0,
        help="loss weight of windows whose answer is 'no answer' (the CLS token), relative to the others",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout while training (default 0: trains 1.5x faster on CPU); -1 keeps the base's",
    )
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")


def _train(args: argparse.Namespace) -> int:
    from spanqa.training.loop import TrainConfig, train

    cfg = TrainConfig(
        base=args.base,
        train=args.train,
        out=args.out,
        tune=args.tune,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len,
        doc_stride=args.doc_stride,
        max_examples=args.max_examples,
        negatives=args.negatives,
        drop_negatives=args.drop_negatives,
        perturb_negatives=args.perturb_negatives,
        null_weight=args.null_weight,
        seed=args.seed,
        checkpoint_minutes=args.checkpoint_minutes,
        save_dtype=args.save_dtype,
        dropout=None if args.dropout < 0 else args.dropout,
    )
    if args.resume:
        saved = Path(args.out) / "train_config.json"
        if saved.is_file():  # a resumed run must replay the same data and schedule
            import dataclasses

            known = {f.name for f in dataclasses.fields(TrainConfig)}
            saved_cfg = json.loads(saved.read_text(encoding="utf-8"))
            cfg = TrainConfig(**{k: v for k, v in saved_cfg.items() if k in known})
    out = train(cfg, resume=args.resume)
    print(out)
    return 0


def _add_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="SQuAD-format file")
    p.add_argument("--fraction", type=float, default=0.5, help="share of questions in the first output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, nargs=2, metavar=("FIRST", "SECOND"))


def _split(args: argparse.Namespace) -> int:
    from spanqa.evaluation.squad import parse_squad, read_squad_json, split_by_article

    doc = read_squad_json(args.data)
    parse_squad(doc, str(args.data))  # validates the whole file first
    first, second = split_by_article(doc, args.fraction, args.seed)
    for part, path in zip((first, second), args.out):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(part, ensure_ascii=False), encoding="utf-8")
        n = sum(len(p["qas"]) for a in part["data"] for p in a["paragraphs"])
        print(f"{path}: {len(part['data'])} articles, {n} questions")
    return 0


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "train": (_add_train, _train, "fine-tune a model on SQuAD-format data"),
    "split": (_add_split, _split, "split a SQuAD-format file in two by article"),
}
