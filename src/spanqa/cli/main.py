"""The `spanqa` command: every user mistake becomes one line on stderr and exit code 2.

Each command group lives in its own module with a COMMANDS dict of (add arguments, run, help).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

from spanqa.cli.common import EXIT_USAGE, Parser, missing_package
from spanqa.errors import SpanqaError

COMMAND_MODULES = (
    "spanqa.cli.ask",
    "spanqa.cli.evaluate",
    "spanqa.cli.train",
    "spanqa.cli.onnx",
    "spanqa.cli.index",
    "spanqa.cli.serve",
)


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
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0] == "spanqa":
            raise  # spanqa's own module missing is a broken install or a bug, not an option to install
        print(f"spanqa: error: {missing_package(e.name.split('.')[0])}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("spanqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def all_commands() -> dict[str, tuple[Callable, Callable, str]]:
    commands: dict[str, tuple[Callable, Callable, str]] = {}
    for name in COMMAND_MODULES:
        commands.update(importlib.import_module(name).COMMANDS)
    return commands


def build_parser() -> argparse.ArgumentParser:
    from spanqa import __version__

    parser = Parser(prog="spanqa", description="Extractive question answering with exact character offsets.")
    parser.add_argument("--version", action="version", version=f"spanqa {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for name, (adder, func, helptext) in all_commands().items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        adder(p)
        p.set_defaults(func=func)
    return parser
