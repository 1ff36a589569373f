"""`spanqa index add|ls|rm`, and the retrieval options of `spanqa ask` (`--retrieve`, `--db`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from spanqa.cli.common import format_prediction, load_reader, reading_options
from spanqa.retrieval.formats.text import DEFAULT_MAX_PAGES


def add_retrieval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--retrieve",
        choices=["auto", "always", "never"],
        default="auto",
        help="read only the best BM25 passages of a text: auto (texts over --max-windows), always, never",
    )
    p.add_argument("--max-windows", type=int, default=8, help="with --retrieve auto: longest text read whole")
    p.add_argument(
        "--passages", type=int, help="how many passages to read (default: 4 of a long text, 5 from an index)"
    )


def retrieval_from_args(args: argparse.Namespace):
    from spanqa.retrieval.plan import Retrieval

    extra = {"passages": args.passages} if args.passages is not None else {}
    return Retrieval(args.retrieve, max_windows=args.max_windows, **extra)


def ask_index(args: argparse.Namespace) -> int:
    """`spanqa ask --db FILE QUESTION`: retrieve passages from the index, read them, answer."""
    from spanqa.errors import check_text
    from spanqa.retrieval.index import DEFAULT_SEARCH_PASSAGES, DocumentIndex

    check_text(args.question, "question")
    with DocumentIndex(args.db, create=False) as index:
        reader = load_reader(args)
        passages = args.passages if args.passages is not None else DEFAULT_SEARCH_PASSAGES
        pred = index.answer(args.question, reader, passages=passages, **reading_options(args))
    if args.json:
        print(json.dumps(pred.to_dict(), ensure_ascii=False))
    elif not pred.answers:
        print("no answer (no indexed passage shares a word with the question)")
    else:
        print(format_prediction(pred))
    return 0


def _add_index(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_command", metavar="{add,ls,rm}", parser_class=type(p))
    sub.required = True
    add = sub.add_parser(
        "add",
        help="add text, markdown, PDF, HTML and DOCX files, folders of them (recursively), JSONL {id, text}",
    )
    _add_db(add)
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("--skip-bad", action="store_true", help="leave out unusable files with a warning")
    add.add_argument("--max-mb", type=float, default=10.0, help="largest file or text, in MB (default 10)")
    add.add_argument(
        "--max-pages", type=int, default=DEFAULT_MAX_PAGES, help=f"longest PDF (default {DEFAULT_MAX_PAGES})"
    )
    add.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for another writer")
    ls = sub.add_parser("ls", help="list the indexed documents")
    _add_db(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per document")
    rm = sub.add_parser("rm", help="remove documents by id")
    _add_db(rm)
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for another writer")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, metavar="FILE", help="the index's SQLite file")


def _index(args: argparse.Namespace) -> int:
    return {"add": _index_add, "ls": _index_ls, "rm": _index_rm}[args.index_command](args)


def _index_add(args: argparse.Namespace) -> int:
    from spanqa.errors import InputError
    from spanqa.retrieval.index import DocumentIndex

    if not args.max_mb > 0:
        raise InputError(f"--max-mb must be positive, got {args.max_mb:g}")
    if args.max_pages < 1:
        raise InputError(f"--max-pages must be positive, got {args.max_pages}")
    with DocumentIndex(args.db, timeout=args.timeout) as index:
        report = index.add(
            args.paths,
            progress=sys.stderr.isatty(),
            skip_bad=args.skip_bad,
            max_bytes=int(args.max_mb * 1e6),
            max_pages=args.max_pages,
        )
    summary = f"{len(report.added)} added, {len(report.replaced)} replaced, {len(report.skipped)} unchanged"
    if report.refused:
        summary += f", {len(report.refused)} refused"
    print(f"{args.db}: {summary}")
    return 0


def _index_ls(args: argparse.Namespace) -> int:
    from spanqa.retrieval.index import DocumentIndex

    with DocumentIndex(args.db, create=False) as index:
        docs = index.documents()
    for d in docs:
        if args.json:
            print(json.dumps(d.__dict__, ensure_ascii=False))
        else:
            pages = f"\t{d.pages} pages" if d.pages is not None else ""
            print(f"{d.id}\t{d.format}\t{d.chars} chars{pages}\t{d.passages} passages\t{d.added}")
    if not args.json:
        print(f"{len(docs)} documents", file=sys.stderr)
    return 0


def _index_rm(args: argparse.Namespace) -> int:
    from spanqa.retrieval.index import DocumentIndex

    with DocumentIndex(args.db, create=False, timeout=args.timeout) as index:
        index.remove(args.ids)
    print(f"{args.db}: {len(args.ids)} removed")
    return 0


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "index": (_add_index, _index, "a persistent document index: add, ls, rm (then: spanqa ask --db FILE)"),
}
