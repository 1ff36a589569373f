"""How calibrated the span score is when "right" means any gold answer (the official rule) or the first only.

    python benchmarks/span_references.py [--model DIR] [--backend torch] [--data FILE ...]

SQuAD 2.0 dev questions carry the spans of several annotators and a span is right when it matches any of them;
TyDi's carry one or two. A score calibrated for one annotator's span looks underconfident on the first and
fits the second. For each file (answerable questions, the top answer): the mean score, the share right against
any gold and against the first gold, the span ECE (10 bins) for each, and the share of questions with two or
more distinct gold texts. Prints one table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spanqa.evaluation.metrics import compute_exact
from spanqa.evaluation.squad import load_squad
from spanqa.reading.calibration import expected_calibration_error
from spanqa.reading.reader import Reader

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = [DATA / "squad-v2.0-dev-half.json", DATA / "tydiqa-en-dev.json"]


def measure(reader: Reader, file: Path) -> dict[str, float]:
    examples = [e for e in load_squad(file) if e.answers]
    preds = reader.answer_batch([(e.question, e.context) for e in examples], batch_size=16)
    rows = [
        (
            p.answers[0].score,
            max(compute_exact(a.text, p.answers[0].text) for a in e.answers),
            compute_exact(e.answers[0].text, p.answers[0].text),
            len({a.text for a in e.answers}) >= 2,
        )
        for e, p in zip(examples, preds)
        if p.answers
    ]
    score, any_gold, first_gold, several = (np.array(column, dtype=np.float64) for column in zip(*rows))
    return {
        "questions": len(rows),
        "mean score": score.mean(),
        "right (any gold)": any_gold.mean(),
        "right (first gold)": first_gold.mean(),
        "ECE (any gold)": expected_calibration_error(score, any_gold, 10),
        "ECE (first gold)": expected_calibration_error(score, first_gold, 10),
        "2+ distinct golds": several.mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--data", type=Path, nargs="+", default=FILES)
    args = parser.parse_args()
    reader = Reader.load(args.model, backend=args.backend)
    results = {file.name: measure(reader, file) for file in args.data}
    columns = list(next(iter(results.values())))
    print(f"# Span score against any gold answer or the first: {reader.model_dir.name}, {args.backend}\n")
    print("| file | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name, row in results.items():
        cells = [f"{v:,}" if isinstance(v, int) else f"{v:.3f}" for v in row.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
