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
    p.add_argument("--na-probs-out", metavar="N.json", help="write {id: 1 - answerable}")
    p.add_argument(
        "--tune",
        action="store_true",
        help="fit both calibrations on this file and store them in the card of --model DIR "
        "(--answerable-prior P also sets the card's default prior)",
    )
    p.add_argument(
        "--tune-spans-on",
        action="append",
        metavar="FILE",
        default=[],
        help="with --tune: also fit the span calibration on FILE's answerable questions (repeatable; e.g. "
        "an all-answerable set in another question style); each file weighs as much as --data's",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --tune: allow a file named like evaluation data, or one too small to calibrate on",
    )
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="write PNG plots here: F1 against the prior, reliability of both probabilities (matplotlib)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="windows per forward pass")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N questions of the file")
    add_reading(p)


def _evaluate(args: argparse.Namespace) -> int:
    from spanqa.evaluation.evaluate import (
        decided,
        evaluate_results,
        format_metrics,
        na_probs,
        predictions,
        read_questions,
    )
    from spanqa.evaluation.squad import check_examples, load_squad, misplaced_answers
    from spanqa.reading.calibration import check_prior

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be a positive number of questions, got {args.limit}")
    if args.answerable_prior is not None:
        check_prior(args.answerable_prior, "--answerable-prior")
        if args.null_threshold is not None:
            raise InputError("give --answerable-prior or --null-threshold (a raw threshold), not both")
    if args.tune and args.null_threshold is not None:
        raise InputError("--tune fits the calibrations itself; do not give --null-threshold with it")
    if args.tune:
        _check_tune_target(args)
    if args.plots:
        from spanqa.cli.common import require

        require("matplotlib", "--plots")  # before the model loads and before anything is written
    examples = load_squad(args.data)[: args.limit]
    check_examples(examples, args.data)  # before the model loads: a broken file fails at once
    if args.tune_spans_on and not args.tune:
        raise InputError("--tune-spans-on is for --tune")
    span_files = {}
    if args.tune:
        _check_tune_size(args, examples)
        from spanqa.evaluation.tuning import check_tuning_file

        for file in args.tune_spans_on:
            check_tuning_file(file, args.force)
            span_files[file] = load_squad(file)  # bad files fail now, not after the model has read --data
    misplaced = misplaced_answers(examples)  # said once the options are known to be good
    if misplaced:
        print(
            f"spanqa: warning: {args.data}: {len(misplaced)} gold answer(s) not at their answer_start "
            f"(first: {misplaced[0]}); the metrics compare answer texts and are not affected",
            file=sys.stderr,
        )
    reader = load_reader(args)
    reading = reading_options(args)
    journal = run_journal("evaluate", reader, args.data, reading)
    journals = [journal]
    results = read_questions(
        reader, examples, batch_size=args.batch_size, progress=True, journal=journal, **reading
    )
    if args.tune:
        from spanqa.backends.model_dir import read_card
        from spanqa.evaluation.tuning import tune_results
        from spanqa.reading.calibration import Calibration

        span_sets = {}
        for file, extra in span_files.items():
            span_journal = run_journal("evaluate", reader, file, reading)
            span_sets[Path(file).name] = read_questions(
                reader, extra, batch_size=args.batch_size, progress=True, journal=span_journal, **reading
            )
            journals.append(span_journal)
        section = tune_results(
            Path(args.model),
            results,
            source=Path(args.data).name + (f" (first {args.limit})" if args.limit else ""),
            answerable_prior=args.answerable_prior,
            span_sets=span_sets,
            plots_dir=Path(args.plots) if args.plots else None,
            settings=_settings(args, reader),
        )
        calibration = Calibration.from_card(read_card(Path(args.model)))
        results = decided(results, calibration)
        metrics = section["metrics"]
    else:
        calibration = reader.calibration
        results = decided(results, calibration, prior=args.answerable_prior, threshold=args.null_threshold)
        metrics = evaluate_results(results, calibration)
        if args.plots:
            from spanqa.evaluation.tuning import write_plots

            write_plots(results, calibration, Path(args.plots), prefix="evaluation")
    if args.null_threshold is None:
        metrics["answerable_prior"] = args.answerable_prior or calibration.default_prior
    else:
        metrics["null_threshold"] = args.null_threshold
    if args.predictions_out:
        _write_json(args.predictions_out, predictions(results))
    if args.na_probs_out:
        _write_json(args.na_probs_out, na_probs(results))
    for done in journals:
        done.remove()  # everything they kept is in the outputs (and the card) now
    if args.json:
        print(json.dumps(metrics))
    else:
        rule = (
            f"raw threshold {args.null_threshold:g}"
            if args.null_threshold is not None
            else f"answerable prior {metrics['answerable_prior']:g}"
        )
        print(f"{args.data}: {len(results)} questions, {rule}")
        print(format_metrics(metrics))
        if args.tune:
            print(f"tuned: {Path(args.model) / 'spanqa.json'} updated (calibrations, prior, tuning metrics)")
    return 0


def _check_tune_target(args: argparse.Namespace) -> None:
    """Tuning rewrites a model's card: the model must be named, and be a directory on this machine."""
    from spanqa.evaluation.tuning import check_tuning_file

    check_tuning_file(args.data, args.force)
    if args.model is None:
        raise InputError(
            "--tune writes the calibrations into a model's card: name the model with --model DIR "
            "(to tune spanqa's own model, copy its directory first; the installed package is never rewritten)"
        )
    if not Path(args.model).is_dir():
        raise InputError(f"--tune needs --model to be a model directory on this machine, not {args.model!r}")


def _check_tune_size(args: argparse.Namespace, examples: list) -> None:
    """Refuse (unless --force) a tuning set too small to fit the calibrations honestly, before reading it."""
    from spanqa.evaluation.tuning import size_problems

    answerable = sum(bool(ex.answers) for ex in examples)
    problems = size_problems(answerable, len(examples) - answerable)
    if problems and not args.force:
        raise InputError(
            f"{args.data} is too small to calibrate on honestly: {'; '.join(problems)}; "
            "tune on a larger held-out file, or pass --force to tune anyway"
        )
    if problems:
        print(
            f"spanqa: WARNING: tuning on a set too small to calibrate honestly: {'; '.join(problems)}",
            file=sys.stderr,
        )


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
        "results": "features-v2",  # the record format: a journal of an older spanqa is not resumed
        # predict writes probabilities and decisions: a retuned card starts over
        "calibration": repr(reader.calibration) if kind != "evaluate" else None,
        # evaluation keeps raw features and decides afterwards: a run resumes under another prior
        "reading": reading
        if kind != "evaluate"
        else {k: v for k, v in reading.items() if k not in ("null_threshold", "answerable_prior")},
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
        "official SQuAD 2.0 metrics of a model on a SQuAD-format file (--tune: fit the calibrations)",
    ),
}
