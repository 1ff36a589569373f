"""Choosing FALLBACK_MARGIN: int8's agreement with fp32 when the questions near the decision are read in fp32.

    python benchmarks/int8_fallback.py [--model DIR] [--data runs/data/dev-rest-tune.json] [--limit 600]
        [--runtime onnx|openvino] [--span-gaps 0.02,0.05 [--margins 0.01,0.02]]

Reads the questions once with int8 alone and once with fp32 (ONNX, batch 8), then for each margin m: the
share of questions whose int8 `answerable` lies within m of 0.5 (those the reader would read again in fp32),
and the share of final answers equal to fp32's once they are. Tuning data only: the margin is chosen here and
measured on dev-half by `spanqa bench`. Prints one table.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from spanqa.backends.load import load_backend
from spanqa.backends.model_dir import resolve_model
from spanqa.backends.onnx_backend import OnnxBackend, cpu_cores, onnx_file
from spanqa.evaluation.bench import final_answer
from spanqa.evaluation.metrics import get_raw_scores
from spanqa.evaluation.squad import load_squad
from spanqa.reading.reader import Reader

MARGINS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=Path("runs/data/dev-rest-tune.json"))
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--int8-file", type=Path, help="another int8 graph (e.g. a levers.py variant)")
    parser.add_argument("--runtime", choices=("onnx", "openvino"), default="onnx", help="whose int8")
    parser.add_argument("--margins", default=",".join(map(str, MARGINS)), help="for the table with span gaps")
    parser.add_argument(
        "--span-gaps",
        default="",
        help="also re-read answered questions whose two best spans' scores are closer than each gap (logits)",
    )
    args = parser.parse_args()
    model_dir = resolve_model(args.model)
    examples = load_squad(args.data)[: args.limit]
    items = [(e.question, e.context) for e in examples]
    preds, gaps = {}, []
    for name, int8 in (("fp32", False), ("int8", True)):
        reader = Reader.load(model_dir, backend="onnx")
        # the backend alone, without the fallback that Reader.load gives onnx-int8
        file = args.int8_file if int8 and args.int8_file else onnx_file(model_dir, int8=int8)
        if int8 and args.runtime == "openvino":
            reader.backend = load_backend("openvino-int8-alone", model_dir)
        else:
            reader.backend = OnnxBackend(file, name, threads=cpu_cores())
        with _span_gaps(gaps if int8 else []):
            preds[name] = reader.answer_batch(items, batch_size=args.batch_size)
    margin = np.array([abs(p.answerable - 0.5) for p in preds["int8"]])
    same = np.array([final_answer(a) == final_answer(b) for a, b in zip(preds["fp32"], preds["int8"])])
    graph = args.int8_file.name if args.int8_file else "the shipped int8 recipe"
    graph = "OpenVINO's int8" if args.runtime == "openvino" else graph
    where = f"{model_dir.name} ({graph}), {len(items)} questions of {args.data.name}"
    print(f"# int8 with fp32 re-reads: {where}\n")
    print("| margin | questions read again | same answer as fp32 |")
    print("| ---: | ---: | ---: |")
    for m in MARGINS:
        again = margin < m
        print(f"| {m:g} | {100 * again.mean():.1f}% | {100 * (again | same).mean():.1f}% |")
    if args.span_gaps:
        gap = np.array(gaps)
        answered = np.array([p.answerable >= 0.5 for p in preds["int8"]])
        golds = {e.id: [a.text for a in e.answers] for e in examples}
        ids = [e.id for e in examples]

        def f1(answers: list[str]) -> float:
            return 100 * float(np.mean(list(get_raw_scores(golds, dict(zip(ids, answers)))[1].values())))

        fp32, int8 = ([final_answer(p) for p in preds[k]] for k in ("fp32", "int8"))
        print(f"\nF1: fp32 {f1(fp32):.2f}, int8 alone {f1(int8):.2f}\n")
        print("| margin | span gap | questions read again | same answer as fp32 | F1 |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for m in (float(x) for x in args.margins.split(",")):
            for g in (float(x) for x in args.span_gaps.split(",")):
                again = (margin < m) | (answered & (gap < g))
                mixed = [a if r else b for a, b, r in zip(fp32, int8, again)]
                print(
                    f"| {m:g} | {g:g} | {100 * again.mean():.1f}% | {100 * (again | same).mean():.1f}% "
                    f"| {f1(mixed):.2f} |"
                )


@contextlib.contextmanager
def _span_gaps(into: list[float]) -> Iterator[None]:
    """Records each question's span gap (reading.steps.span_gap) as the reader finishes it."""
    from spanqa.reading import steps

    plain = steps.finish

    def finish(p, item, *args, **kwargs):  # type: ignore[no-untyped-def]
        into.append(steps.span_gap(p, item))  # what the reader's re-read looks at (SPAN_GAP)
        return plain(p, item, *args, **kwargs)

    steps.finish = finish
    try:
        yield
    finally:
        steps.finish = plain


if __name__ == "__main__":
    main()
