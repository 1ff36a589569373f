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

from spanqa.evaluation.evaluate import ECE_BINS, read_questions, span_scores
from spanqa.evaluation.metrics import compute_exact
from spanqa.evaluation.squad import load_squad
from spanqa.reading.calibration import expected_calibration_error
from spanqa.reading.reader import Reader

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = [DATA / "squad-v2.0-dev-half.json", DATA / "tydiqa-en-dev.json"]


def measure(reader: Reader, file: Path) -> dict[str, float]:
    """The evaluation's own span scores and "right" (any gold: `span_scores`), beside the first gold only."""
    results = read_questions(reader, [e for e in load_squad(file) if e.answers], batch_size=16)
    score, any_gold = span_scores(results, reader.calibration)
    kept = [r for r in results if r.has_answer and r.has_span]  # the rows span_scores keeps, in its order
    first_gold = np.array([compute_exact(r.answers[0], r.text) for r in kept], dtype=np.float64)
    several = np.array([len(set(r.answers)) >= 2 for r in kept], dtype=np.float64)
    return {
        "questions": len(kept),
        "mean score": score.mean(),
        "right (any gold)": any_gold.mean(),
        "right (first gold)": first_gold.mean(),
        "ECE (any gold)": expected_calibration_error(score, any_gold, ECE_BINS),
        "ECE (first gold)": expected_calibration_error(score, first_gold, ECE_BINS),
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
