"""`spanqa ask` (one question about texts given inline, in files or on stdin) and `spanqa tokens`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from spanqa.cli.common import (
    add_model,
    add_reading,
    format_prediction,
    load_reader,
    read_stdin,
    reading_options,
)
from spanqa.cli.feedback import Activity


def _add_ask(p: argparse.ArgumentParser) -> None:
    add_model(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--context", help="the text to answer from")
    src.add_argument(
        "--context-file",
        action="append",
        metavar="FILE",
        help="read the text from FILE: text, PDF, HTML or DOCX (repeat for several); default: stdin",
    )
    src.add_argument("--db", metavar="FILE", help="answer from a document index (see: spanqa index add)")
    add_reading(p)
    from spanqa.cli.index import add_retrieval_arguments

    add_retrieval_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("question")


def _ask(args: argparse.Namespace) -> int:
    from spanqa.cli.index import ask_index, retrieval_from_args
    from spanqa.errors import check_text
    from spanqa.retrieval.sources import read_context

    if args.db:
        return ask_index(args)
    check_text(args.question, "question")
    retrieve = retrieval_from_args(args)
    files = []  # the files' extracted texts, with the page map of a PDF
    if args.context is not None:
        contexts = [args.context]
    elif args.context_file:
        files = [read_context(f) for f in args.context_file]
        contexts = [f.text for f in files]
    else:
        contexts = [read_stdin()]
    for name, text in zip(args.context_file or ["context"], contexts):
        check_text(text, f"context file {name}" if args.context_file else "context")
    reader = load_reader(args)
    item = (args.question, contexts[0] if len(contexts) == 1 else contexts)
    size = sum(len(text) for text in contexts)
    with Activity(f"reading {size:,} characters") as activity:  # a long text is minutes of windows
        pred = reader.answer_batch([item], progress=activity, retrieve=retrieve, **reading_options(args))[0]
    names = args.context_file if args.context_file and len(contexts) > 1 else None
    if args.json:
        out = pred.to_dict()
        for a in out["answers"] if names else []:
            a["file"] = names[a["doc"]]
        for a in out["answers"] if files else []:
            page = files[a.get("doc", 0)].page_of(a["start"])
            if page is not None:
                a["page"] = page
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(format_prediction(pred, names, contexts=contexts))
    return 0


def _add_tokens(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("text")


def _tokens(args: argparse.Namespace) -> int:
    from spanqa.backends.model_dir import load_tokenizer, resolve_model
    from spanqa.errors import check_text

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


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "ask": (_add_ask, _ask, "answer a question about a text"),
    "tokens": (_add_tokens, _tokens, "show how the tokenizer splits a text, with character offsets"),
}
