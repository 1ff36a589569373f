"""What every `spanqa` subcommand shares: the one-line error parser, model and reading options, output."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any

from spanqa.backends.base import BACKENDS
from spanqa.errors import InputError

EXIT_USAGE = 2


# Python 3.11's argparse takes "-1" and "-2.5" for values but "-1e9" and "-inf" for option names, so
# "--null-threshold -1e9" failed with "expected one argument". Subparsers are built by the same class.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-inf(inity)?$", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"spanqa: error: {message}\n")


def positive_int(text: str) -> int:
    """An option that counts something, checked when the command line is read (before any model loads)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def window_length(text: str) -> int:
    return _int_at_least(text, 8)  # the Windower's own floor: special tokens, the question and some context


def _int_at_least(text: str, floor: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < floor:
        what = "a positive integer" if floor == 1 else f"at least {floor}"
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def threshold(text: str) -> float:
    """A null threshold: a number, -inf (always answer) or inf (never); not nan, which answers everything."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError("must be a number (or -inf / inf), not nan")
    return value


def missing_package(module: str) -> str:
    """One line saying what to install for a module spanqa needs: the requirement as spanqa declares it."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("spanqa") or []
    except PackageNotFoundError:  # run from a source tree that was never installed
        declared = []
    wanted = module.lower().replace("-", "_")
    for line in declared:
        requirement, _, marker = line.partition(";")
        name = re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0]
        if name.lower().replace("-", "_").replace(".", "_") == wanted:
            extra = re.search(r'extra == "([^"]+)"', marker)
            part = f" (spanqa's {extra.group(1)!r} extra)" if extra else ""
            spec = requirement.strip().replace(" ", "")
            return f"this needs {module}{part}, which is not installed: pip install '{spec}'"
    return f"this needs the Python package {module}, which is not installed: pip install {module}"


def require(module: str, feature: str) -> None:
    """Check that an optional package is there before any work (and the model load) starts."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"{feature}: {missing_package(module)}")


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--backend", default="torch", choices=list(BACKENDS))


def add_reading(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-k", type=positive_int, default=1, help="how many answers to return")
    p.add_argument("--max-answer-len", type=positive_int, default=30, help="longest answer, in tokens")
    p.add_argument(
        "--answerable-prior",
        type=float,
        metavar="P",
        help="how likely your questions are to be answered by the text, 0-1 (default: the model card's); "
        "no answer when answerable < 0.5",
    )
    p.add_argument(
        "--null-threshold",
        type=threshold,
        help="decide on a raw threshold instead: no answer below this null_score_diff",
    )
    p.add_argument("--max-seq-len", type=window_length, help="window length in tokens (default: the model's)")
    p.add_argument(
        "--doc-stride", type=non_negative_int, default=128, help="overlap between windows, in tokens"
    )


def reading_options(args: argparse.Namespace) -> dict:
    return {
        "top_k": args.top_k,
        "max_answer_len": args.max_answer_len,
        "null_threshold": args.null_threshold,
        "answerable_prior": args.answerable_prior,
        "max_seq_len": args.max_seq_len,
        "doc_stride": args.doc_stride,
    }


def load_reader(args: argparse.Namespace):
    from spanqa.cli.feedback import Activity
    from spanqa.reading.reader import Reader

    # never quick (torch alone takes seconds to import; maybe an ONNX export): said at once
    with Activity(f"loading the model ({args.backend})", delay=0.0):
        return Reader.load(args.model, backend=args.backend)


def read_stdin() -> str:
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
    chance = f"{pred.answerable:.0%} likely that the text answers the question"
    if pred.answerable_prior is not None:
        chance += f" (prior {pred.answerable_prior:g})"
    if pred.no_answer:
        lines.append(f"probably not in the text: {chance}")
        lines.append("best guesses, not answers:" if several else "best guess, not an answer:")
    for rank, a in enumerate(pred.answers, 1):
        where = f"{doc_names[a.doc]} " if doc_names and isinstance(a.doc, int) else ""
        where = f"{a.doc} " if isinstance(a.doc, str) else where  # an indexed document's id
        passage = f" passage {a.passage}" if a.passage is not None else ""
        if a.citation is not None and a.citation.page is not None:
            passage = f" page {a.citation.page}{passage}"
        prefix = f"{rank}. " if several else ("" if pred.no_answer else "answer: ")
        text = json.dumps(a.text, ensure_ascii=False)
        lines.append(f"{prefix}{text}  {where}[{a.start}:{a.end}]{passage}  score {_score(a.score)}")
        if contexts is not None and not isinstance(a.doc, str):
            lines.append("   " + _in_context(contexts[a.doc or 0], a.start, a.end))
        elif a.citation is not None:  # from an index: shown in its passage
            c = a.citation
            lines.append(
                "   " + _in_context(c.passage_text, a.start - c.passage_start, a.end - c.passage_start)
            )
    if not pred.no_answer:
        lines.append(f"{chance}; score: the chance that the span is right if it does")
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
