"""`spanqa predict --ray [ADDRESS]`: the questions of a file answered on a Ray cluster (spanqa.cluster).

The options join `spanqa predict`'s own; without --ray the command runs locally as before.
"""

from __future__ import annotations

import argparse
import sys

from spanqa.errors import InputError
from spanqa.reading.bucketing import BATCH_SIZE


class _DefaultStr(str):
    """A parser default, told apart from the same value typed by the user (argparse cannot)."""


class _DefaultInt(int):
    """See _DefaultStr."""


RAY_ONLY = ("concurrency", "threads", "questions_per_task", "shared_model")


def add_ray_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("on a Ray cluster (pip install 'spanqa[ray]'; see docs/scale.md)")
    g.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="answer on Ray: 'auto' joins the running cluster, HOST:6379 a given one, no address starts "
        "a local one. --data may then also be JSON Lines or Parquet (local or s3://...), "
        "--out .jsonl or .parquet; default backend auto",
    )
    g.add_argument("--concurrency", type=int, help="workers (default: the cluster's CPUs / --threads)")
    g.add_argument("--threads", type=int, help="CPUs each worker reserves and runs on (default 1)")
    g.add_argument("--questions-per-task", type=int, help="rows per worker call (default 64)")
    g.add_argument(
        "--shared-model",
        action="store_true",
        help="workers read --model at the same path (shared filesystem) instead of receiving it",
    )
    # Defaults marked, so that --ray can choose its own when the user chose none (backend auto; batch size
    # by backend, see spanqa.cluster.rows.ReadOptions) while the local command keeps torch and 8.
    p.set_defaults(backend=_DefaultStr("torch"), batch_size=_DefaultInt(BATCH_SIZE))


def uses_ray(args: argparse.Namespace) -> bool:
    if args.ray is None:
        given = [name for name in RAY_ONLY if getattr(args, name) not in (None, False)]
        if given:
            raise InputError(f"--{given[0].replace('_', '-')} needs --ray")
        return False
    return True


def predict_on_ray(args: argparse.Namespace) -> int:
    from spanqa.cluster import files, ray_predict
    from spanqa.cluster.rows import ReadOptions

    files.output_format(args.out)  # a bad --out fails before the cluster starts
    ray_predict.require_ray()
    options = ReadOptions(
        top_k=args.top_k,
        max_answer_len=args.max_answer_len,
        null_threshold=args.null_threshold,
        max_seq_len=args.max_seq_len,
        doc_stride=args.doc_stride,
        batch_size=None if isinstance(args.batch_size, _DefaultInt) else args.batch_size,
    )
    cluster = ray_predict.ClusterOptions(
        concurrency=args.concurrency,
        threads=args.threads if args.threads is not None else 1,
        questions_per_task=args.questions_per_task or ray_predict.QUESTIONS_PER_TASK,
    )
    backend = "auto" if isinstance(args.backend, _DefaultStr) else args.backend
    ray_predict.connect(args.ray or None)
    questions = files.read_questions(args.data)
    records = ray_predict.answer_dataset(
        questions, args.model, backend, options=options, cluster=cluster, shared_model=args.shared_model
    )
    summary = files.write_predictions(records, args.out)
    print(f"{summary.rows} predictions written to {args.out}", file=sys.stderr)
    if summary.errors:
        first = "; ".join(summary.first_errors)
        raise InputError(f"{summary.errors} of {summary.rows} rows could not be answered ({first})")
    return 0
