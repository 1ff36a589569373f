"""`spanqa predict` and `spanqa evaluate`: SQuAD files in; predictions, or metrics and tuning, out."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spanqa.cli.cluster import add_ray_options, predict_on_ray, uses_ray
from spanqa.cli.common import add_model, add_reading, load_reader, positive_int, reading_options
from spanqa.errors import InputError
from spanqa.evaluation.squad import SQUAD_SOURCE
from spanqa.reading.bucketing import BATCH_SIZE


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument(
        "--data", required=True, help=f"SQuAD-format JSON file (v1.1 or v2.0; from {SQUAD_SOURCE})"
    )
    p.add_argument("--predictions-out", metavar="P.json", help='write {id: answer} ("" = no answer)')
    p.add_argument("--na-probs-out", metavar="N.json", help="write {id: probability of no answer}")
    p.add_argument(
        "--tune",
        action="store_true",
        help="store the best-F1 null threshold and a fitted score calibration in the model's card",
    )
    p.add_argument("--force", action="store_true", help="allow --tune on a file named like evaluation data")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots here (with --tune: default <model>/plots)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="windows per forward pass")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N questions of the file")
    add_reading(p)


def _evaluate(args: argparse.Namespace) -> int:
    from spanqa.evaluation.evaluate import (
        evaluate_results,
        format_metrics,
        na_probs,
        predictions,
        read_questions,
    )
    from spanqa.evaluation.squad import check_examples, load_squad, misplaced_answers

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be a positive number of questions, got {args.limit}")
    if args.plots:
        from spanqa.cli.common import require

        require("matplotlib", "--plots")
    if args.tune and args.null_threshold is not None:
        raise InputError("--tune finds the null threshold itself; do not give --null-threshold with it")
    if args.tune:
        from spanqa.evaluation.tuning import check_tuning_file

        check_tuning_file(args.data, args.force)
    examples = load_squad(args.data)[: args.limit]
    check_examples(examples, args.data)  # before the model loads: a broken file fails at once
    misplaced = misplaced_answers(examples)
    if misplaced:
        print(
            f"spanqa: warning: {args.data}: {len(misplaced)} gold answer(s) not at their answer_start "
            f"(first: {misplaced[0]}); the metrics compare answer texts and are not affected",
            file=sys.stderr,
        )
    reader = load_reader(args)
    reading = reading_options(args)
    journal = run_journal("evaluate", reader, args.data, reading)
    results = read_questions(
        reader, examples, batch_size=args.batch_size, progress=True, journal=journal, **reading
    )
    if args.tune:
        from spanqa.evaluation.evaluate import with_threshold
        from spanqa.evaluation.tuning import tune_results

        section = tune_results(
            reader.model_dir,
            results,
            source=Path(args.data).name + (f" (first {args.limit})" if args.limit else ""),
            plots_dir=Path(args.plots) if args.plots else reader.model_dir / "plots",
            settings=_settings(args, reader),
        )
        metrics = section["metrics"]
        threshold = section["threshold"]
        results = with_threshold(results, threshold)
    else:
        threshold = reader.null_threshold if args.null_threshold is None else args.null_threshold
        metrics = evaluate_results(results, reader.calibrator)
        if args.plots:
            from spanqa.evaluation.tuning import write_plots

            write_plots(results, threshold, reader.calibrator, Path(args.plots), prefix="evaluation")
    if args.predictions_out:
        _write_json(args.predictions_out, predictions(results))
    if args.na_probs_out:
        _write_json(args.na_probs_out, na_probs(results))
    journal.remove()  # everything it kept is in the outputs now
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.data}: {len(results)} questions, null threshold {threshold:.3f}")
        print(format_metrics(metrics))
        if args.tune:
            print(
                f"tuned: {reader.model_dir / 'spanqa.json'} updated (threshold, calibration, tuning metrics)"
            )
    return 0


def _add_predict(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument(
        "--data", required=True, help=f"SQuAD-format JSON file (v1.1 or v2.0; from {SQUAD_SOURCE})"
    )
    p.add_argument("--out", required=True, help="JSON lines output, one per question")
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="windows per forward pass")
    add_reading(p)
    add_ray_options(p)


def _predict(args: argparse.Namespace) -> int:
    if uses_ray(args):  # the questions are answered on a Ray cluster (spanqa.cli.cluster)
        return predict_on_ray(args)
    from spanqa.evaluation.journal import run_resumable
    from spanqa.evaluation.squad import check_examples, load_squad

    examples = load_squad(args.data)
    check_examples(examples, args.data)  # the record's id, not its position in a batch, says what to fix
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
            reader, reading = load_reader(args), reading_options(args)
            journal = run_journal("predict", reader, args.data, reading)

            def read_chunk(indexes: list[int], report: Callable[[int, int], None]) -> list[dict]:
                chunk = [examples[i] for i in indexes]
                items = [(ex.question, ex.context) for ex in chunk]
                preds = reader.answer_batch(items, batch_size=args.batch_size, progress=report, **reading)
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


def run_journal(kind: str, reader: Any, data: str, reading: dict[str, Any]) -> Any:
    """The journal of a run of `kind` over `data`: rerunning the same command resumes it.

    See spanqa.evaluation.journal.
    """
    from spanqa.evaluation.journal import Journal, data_identity, model_identity

    key = {
        "model": model_identity(reader.model_dir),
        "backend": reader.backend.name,
        "null_threshold": reader.null_threshold,
        "reading": reading,
        **data_identity(data),
    }
    return Journal.in_cache(kind, key)


def _settings(args: argparse.Namespace, reader: Any) -> dict[str, Any]:
    """How the tuning set was read: the threshold holds for these settings."""
    return {
        "backend": args.backend,
        "max_seq_len": args.max_seq_len or reader.max_seq_len,
        "doc_stride": args.doc_stride,
        "max_answer_len": args.max_answer_len,
    }


def _write_json(path: str, obj: Any) -> None:
    """Write atomically, so an interrupted run never leaves a truncated file where a good one was."""
    out = Path(path)
    if out.parent and not out.parent.is_dir():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "predict": (_add_predict, _predict, "answer every question of a SQuAD-format file (JSON lines out)"),
    "evaluate": (
        _add_evaluate,
        _evaluate,
        "official SQuAD 2.0 metrics of a model on a SQuAD-format file (--tune: fit threshold, calibration)",
    ),
}
