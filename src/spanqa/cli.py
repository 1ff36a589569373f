"""The `spanqa` command line: every user mistake becomes one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spanqa.bucketing import BATCH_SIZE
from spanqa.errors import SpanqaError

EXIT_USAGE = 2


# Python 3.11's argparse takes "-1" and "-2.5" for values but "-1e9" and "-inf" for option names, so
# "--null-threshold -1e9" failed with "expected one argument". Subparsers are built by the same class.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-inf(inity)?$", re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"spanqa: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", True) else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except SpanqaError as e:
        message = " ".join(str(e).split("\n"))  # one line, even for a library's multi-line message
        print(f"spanqa: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("spanqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


# Modules that add their own subcommands, each with a COMMANDS dict shaped like the one at the end of this
# file.
COMMAND_MODULES = ("spanqa.cli_eval", "spanqa.cli_onnx", "spanqa.cli_index", "spanqa.cli_serve")


def all_commands() -> dict[str, tuple[Callable, Callable, str]]:
    import importlib

    commands = dict(COMMANDS)
    for name in COMMAND_MODULES:
        commands.update(importlib.import_module(name).COMMANDS)
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spanqa", description="Extractive question answering with exact character offsets.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (adder, func, helptext) in all_commands().items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        adder(p)
        p.set_defaults(func=func)
    return parser


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8", "auto"])


def _add_reading(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-k", type=int, default=1, help="how many answers to return")
    p.add_argument("--max-answer-len", type=int, default=30, help="longest answer, in tokens")
    p.add_argument(
        "--null-threshold",
        type=float,
        help="no answer below this null_score_diff (default: the model's tuned threshold)",
    )
    p.add_argument("--max-seq-len", type=int, help="window length in tokens (default: the model's)")
    p.add_argument("--doc-stride", type=int, default=128, help="overlap between windows, in tokens")


def _reading_options(args: argparse.Namespace) -> dict:
    return {
        "top_k": args.top_k,
        "max_answer_len": args.max_answer_len,
        "null_threshold": args.null_threshold,
        "max_seq_len": args.max_seq_len,
        "doc_stride": args.doc_stride,
    }


def _load_reader(args: argparse.Namespace):
    from spanqa.reader import Reader

    return Reader.load(args.model, backend=args.backend)


# ---- ask ---------------------------------------------------------------------------------------------------


def _add_ask(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--context", help="the text to answer from")
    src.add_argument(
        "--context-file",
        action="append",
        metavar="FILE",
        help="read the text from FILE (repeat for several documents); default: stdin",
    )
    src.add_argument("--db", metavar="FILE", help="answer from a document index (see: spanqa index add)")
    _add_reading(p)
    from spanqa.cli_index import add_retrieval_arguments

    add_retrieval_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("question")


def _ask(args: argparse.Namespace) -> int:
    from spanqa.cli_index import ask_index, retrieval_from_args
    from spanqa.reader import check_text
    from spanqa.squad import read_text

    if args.db:
        return ask_index(args)
    check_text(args.question, "question")
    retrieve = retrieval_from_args(args)
    if args.context is not None:
        contexts = [args.context]
    elif args.context_file:
        contexts = [read_text(f, "context file") for f in args.context_file]
    else:
        contexts = [_read_stdin()]
    for name, text in zip(args.context_file or ["context"], contexts):
        check_text(text, f"context file {name}" if args.context_file else "context")
    reader = _load_reader(args)
    if len(contexts) == 1:
        pred = reader.answer(args.question, contexts[0], retrieve=retrieve, **_reading_options(args))
    else:
        pred = reader.answer(args.question, contexts=contexts, retrieve=retrieve, **_reading_options(args))
    names = args.context_file if args.context_file and len(contexts) > 1 else None
    if args.json:
        out = pred.to_dict()
        for a in out["answers"] if names else []:
            a["file"] = names[a["doc"]]
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(format_prediction(pred, names, contexts=contexts))
    return 0


def _read_stdin() -> str:
    from spanqa.errors import InputError

    if sys.stdin is None or sys.stdin.isatty():
        raise InputError("no context: give --context TEXT, --context-file FILE, or pipe the text on stdin")
    stream = getattr(sys.stdin, "buffer", None)
    raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogatepass")
    if b"\x00" in raw:
        raise InputError("stdin holds binary data (NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"stdin is not valid UTF-8 (byte {e.start})") from None


def format_prediction(pred, doc_names: list[str] | None = None, contexts: list[str] | None = None) -> str:
    """Human-readable answers: text, character offsets, score; 'no answer' said first and plainly.

    With `contexts`, each answer is also shown in its surrounding text, marked «like this».
    """
    if not pred.answers:
        return "no answer: the model found no span it could read in the text"
    lines = []
    several = len(pred.answers) > 1
    if pred.no_answer:
        lines.append(f"no answer (null_score_diff {pred.null_score_diff:.2f} is below the threshold)")
        lines.append("best guesses, not answers:" if several else "best guess, not an answer:")
    for rank, a in enumerate(pred.answers, 1):
        where = f"{doc_names[a.doc]} " if doc_names and isinstance(a.doc, int) else ""
        where = f"{a.doc} " if isinstance(a.doc, str) else where  # an indexed document's id
        passage = f" passage {a.passage}" if a.passage is not None else ""
        prefix = f"{rank}. " if several else ("" if pred.no_answer else "answer: ")
        text = json.dumps(a.text, ensure_ascii=False)
        lines.append(f"{prefix}{text}  {where}[{a.start}:{a.end}]{passage}  score {_score(a.score)}")
        if contexts is not None and not isinstance(a.doc, str):
            lines.append("   " + _in_context(contexts[a.doc or 0], a.start, a.end))
    if not pred.no_answer:
        lines.append(f"null_score_diff {pred.null_score_diff:.2f}")
    return "\n".join(lines)


def _score(score: float) -> str:
    """Three decimals, or three significant digits for the tiny shares of an uncalibrated model."""
    return f"{score:.3f}" if score >= 0.001 or score == 0 else f"{score:.2e}"


def _in_context(text: str, start: int, end: int, around: int = 40) -> str:
    """The answer with up to `around` characters either side, on one line."""
    before, after = text[max(0, start - around) : start], text[end : end + around]
    lead = "…" if start > around else ""
    tail = "…" if end + around < len(text) else ""
    return " ".join(f"{lead}{before}«{text[start:end]}»{after}{tail}".split())


# ---- predict -----------------------------------------------------------------------------------------------


def _add_predict(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    p.add_argument("--data", required=True, help="SQuAD-format JSON file")
    p.add_argument("--out", required=True, help="JSON lines output, one per question")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="windows per forward pass")
    _add_reading(p)


def _predict(args: argparse.Namespace) -> int:
    from spanqa.cli_eval import run_journal
    from spanqa.errors import InputError
    from spanqa.journal import run_resumable
    from spanqa.reader import check_text
    from spanqa.squad import load_squad

    examples = load_squad(args.data)
    for ex in examples:  # the record's id, not its position in the batch, tells the user what to fix
        try:
            check_text(ex.question, "question")
            check_text(ex.context, "context")
        except InputError as e:
            raise InputError(f"{args.data}: question id {ex.id}: {e}") from None
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    if out.is_dir():
        raise InputError(f"cannot write {out}: it is a directory")
    try:  # opened before reading, so a bad --out fails at once rather than after the whole run
        f = open(tmp, "w", encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror or e}") from None
    try:  # written whole, then renamed: an interrupted run never leaves half a file under the real name
        with f:
            reader, reading = _load_reader(args), _reading_options(args)
            journal = run_journal("predict", reader, args.data, reading)

            def read_chunk(indexes: list[int]) -> list[dict]:
                chunk = [examples[i] for i in indexes]
                preds = reader.answer_batch(
                    [(ex.question, ex.context) for ex in chunk], batch_size=args.batch_size, **reading
                )
                return [{"id": ex.id, **pred.to_dict()} for ex, pred in zip(chunk, preds)]

            records = run_resumable([ex.id for ex in examples], read_chunk, journal)
            try:
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
            except OSError as e:  # e.g. the disk is full
                raise InputError(f"cannot write {out}: {e.strerror or e}") from None
        tmp.replace(out)
        journal.remove()
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{len(records)} predictions written to {out}", file=sys.stderr)
    return 0


# ---- tokens ------------------------------------------------------------------------------------------------


def _add_tokens(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("text")


def _tokens(args: argparse.Namespace) -> int:
    from spanqa.model_dir import load_tokenizer, resolve_model
    from spanqa.reader import check_text

    check_text(args.text, "text")
    tok = load_tokenizer(resolve_model(args.model))
    tok.no_truncation()
    tok.no_padding()
    tok.encode_special_tokens = True  # as the reader reads text: a typed "[SEP]" is text
    enc = tok.encode(args.text)
    print(f"{'#':>4}  {'id':>6}  {'token':<16} {'chars':<12} text")
    for i, (tid, piece, (a, b)) in enumerate(zip(enc.ids, enc.tokens, enc.offsets)):
        special = enc.special_tokens_mask[i] if enc.special_tokens_mask else 0
        shown = "(special)" if special else json.dumps(args.text[a:b], ensure_ascii=False)
        print(f"{i:>4}  {tid:>6}  {piece:<16} {f'[{a}:{b}]':<12} {shown}")
    return 0


# ---- train -------------------------------------------------------------------------------------------------


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
    from spanqa.train import TrainConfig, train

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


# ---- split -------------------------------------------------------------------------------------------------


def _add_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="SQuAD-format file")
    p.add_argument("--fraction", type=float, default=0.5, help="share of questions in the first output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, nargs=2, metavar=("FIRST", "SECOND"))


def _split(args: argparse.Namespace) -> int:
    from spanqa.squad import parse_squad, read_squad_json, split_by_article

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
    "ask": (_add_ask, _ask, "answer a question about a text"),
    "predict": (_add_predict, _predict, "answer every question of a SQuAD-format file (JSON lines out)"),
    "tokens": (_add_tokens, _tokens, "show how the tokenizer splits a text, with character offsets"),
    "train": (_add_train, _train, "fine-tune a model on SQuAD-format data"),
    "split": (_add_split, _split, "split a SQuAD-format file in two by article"),
}
