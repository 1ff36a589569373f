"""`spanqa train` (fine-tuning, resumable) and `spanqa split` (a SQuAD file in two by article)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

# Options that shape a run: None (not given) means the TrainConfig default for a new run, and the run's own
# saved value on --resume, where only the extending ones may differ (training.config.merge_for_resume).
RUN_OPTIONS = (
    "base",
    "train",
    "out",
    "tune",
    "epochs",
    "lr",
    "batch_size",
    "max_seq_len",
    "doc_stride",
    "max_examples",
    "negatives",
    "drop_negatives",
    "perturb_negatives",
    "null_weight",
    "seed",
    "checkpoint_minutes",
    "save_dtype",
    "dropout",
    "threads",
    "device",
    "precision",
    "checkpoint_dir",
)


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="model directory to start from (an encoder or a QA model)")
    p.add_argument(
        "--train",
        nargs="+",
        metavar="FILE",
        help="SQuAD-format files; FILE@N samples N questions, FILE*R repeats the file R times; "
        "on --resume, the run's files followed by more extend the run with them",
    )
    p.add_argument("--tune", metavar="FILE", help="after training, tune threshold and calibration on FILE")
    p.add_argument("--out", help="output model directory (written when the run finishes)")
    p.add_argument("--epochs", type=float, help="passes over the data (default 1; may be fractional)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, help="windows per step (default 32)")
    p.add_argument("--max-seq-len", type=int, help="window length in tokens (default 256)")
    p.add_argument("--doc-stride", type=int, help="overlap between windows in tokens (default 96)")
    p.add_argument("--max-examples", type=int)
    p.add_argument(
        "--negatives",
        type=float,
        help="synthetic unanswerable examples per answerable one (another paragraph of the article)",
    )
    p.add_argument(
        "--drop-negatives",
        type=float,
        help="negatives per answerable question made by removing the answer's sentences",
    )
    p.add_argument(
        "--perturb-negatives",
        type=float,
        help="negatives per answerable question made by changing the question (negation, antonym, "
        "number or name the paragraph lacks)",
    )
    p.add_argument(
        "--null-weight",
        type=float,
        help="loss weight of windows whose answer is 'no answer' (the CLS token), relative to the others",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--save-dtype", choices=["float32", "float16"])
    p.add_argument(
        "--dropout",
        type=float,
        help="dropout while training (default 0: trains 1.5x faster on CPU); -1 keeps the base's",
    )
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N; checkpoints load on either")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="auto (default): bf16 autocast on CUDA, and on a CPU when a timing at start measures it faster",
    )
    p.add_argument("--checkpoint-minutes", type=float, help="minutes between checkpoints (default 10)")
    p.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="where the run keeps its state (default: <cache>/train/<out name>-<hash>, the cache being "
        "$SPANQA_CACHE or ~/.cache/spanqa)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run of --out where it stopped; with a higher --epochs or more --train files, "
        "extend it; with a lower --epochs, end it sooner",
    )
    p.add_argument(
        "--status", metavar="DIR", help="print where the run of DIR (its --out or run directory) stands"
    )
    p.add_argument("--json", action="store_true", help="with --status: print it as JSON")


def _train(args: argparse.Namespace) -> int:
    from spanqa.errors import InputError
    from spanqa.training import config as run_config
    from spanqa.training import run_dir

    if args.status:
        info = run_dir.status(run_dir.status_dir(args.status))
        print(json.dumps(info, indent=2) if args.json else run_dir.format_status(info))
        return 0
    given = {name: getattr(args, name) for name in RUN_OPTIONS if getattr(args, name) is not None}
    if "dropout" in given and given["dropout"] < 0:
        given["dropout"] = None  # -1: keep the base's dropout
    if args.resume:
        if not args.out and not args.checkpoint_dir:
            raise InputError("--resume needs the run's --out (or its --checkpoint-dir)")
        run = run_dir.run_dir_for(args.out or "", args.checkpoint_dir)
        if not (run / run_dir.CONFIG_FILE).is_file():
            raise InputError(f"nothing to resume: no run in {run}")
        saved = run_config.read_config(run / run_dir.CONFIG_FILE)
        given.setdefault("out", saved.out)
        if args.checkpoint_dir:
            given["checkpoint_dir"] = args.checkpoint_dir
        cfg = run_config.merge_for_resume(saved, given)
    else:
        missing = [f"--{n}" for n in ("base", "train", "out") if n not in given]
        if missing:
            raise InputError(f"the following arguments are required: {', '.join(missing)}")
        cfg = run_config.TrainConfig(**given)
        cfg.validate()

    from spanqa.training.loop import train

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
