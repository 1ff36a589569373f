"""F1 on two evaluation sets against the answerable prior, and against raw null_score_diff thresholds.

    python benchmarks/prior_frontier.py [--model DIR] [--squad FILE] [--other FILE] [--results OUT.json]

Reads both files once with the model (the `spanqa evaluate` journals: an interrupted run resumes, and a
journal left by an evaluation of the same model, file and options is reused), then takes the decision
`answerable < 0.5` at each prior, and `null_score_diff < t` at each raw threshold, without reading again.
One table: a row per prior, then a row per raw threshold, with F1 on both files. Below it, the frontier
check: does any raw threshold beat the card's default prior on both files at once?
Defaults: the shipped model, squad-v2.0-dev-half.json (half unanswerable) and tydiqa-en-dev.json (all
answerable, another question style). Both are evaluation files: nothing here is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PRIORS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
THRESHOLDS = (6.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, -3.0, -4.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--squad", type=Path, default=DATA / "squad-v2.0-dev-half.json")
    p.add_argument("--other", type=Path, default=DATA / "tydiqa-en-dev.json")
    p.add_argument("--results", type=Path, help="also write the table's numbers as JSON")
    args = p.parse_args(argv)
    for file in (args.squad, args.other):
        if not file.is_file():
            p.error(
                f"{file} does not exist (SQuAD 2.0 dev / TyDi QA gold-passage files; see docs/evaluation.md)"
            )
    return args


def read(reader, file: Path) -> list:
    from spanqa.cli.evaluate import run_journal
    from spanqa.evaluation.evaluate import read_questions
    from spanqa.evaluation.squad import load_squad

    reading = {"top_k": 1, "max_answer_len": 30, "null_threshold": None, "answerable_prior": None}
    reading.update(max_seq_len=None, doc_stride=128)  # as `spanqa evaluate` reads by default
    journal = run_journal("evaluate", reader, str(file), reading)
    results = read_questions(reader, load_squad(file), progress=True, journal=journal, **reading)
    journal.remove()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from spanqa.evaluation.evaluate import f1_by_prior, f1_by_threshold
    from spanqa.reading.reader import Reader

    reader = Reader.load(args.model)
    calibration = reader.calibration
    default = calibration.default_prior
    sets = {args.squad.name: read(reader, args.squad), args.other.name: read(reader, args.other)}
    priors = tuple(sorted({*PRIORS, default}))
    by_prior = {name: f1_by_prior(r, calibration, priors) for name, r in sets.items()}
    by_threshold = {name: f1_by_threshold(r, THRESHOLDS) for name, r in sets.items()}
    a, b = list(sets)
    print(f"\nF1 against the decision rule; model {reader.model_dir}; default prior {default:g}")
    print(f"{'rule':<22} {a:>28} {b:>22}")
    for key in by_prior[a]:
        mark = "  <- default" if abs(float(key) - default) < 1e-9 else ""
        print(f"{'prior ' + key:<22} {by_prior[a][key]:28.1f} {by_prior[b][key]:22.1f}{mark}")
    for key in by_threshold[a]:
        print(f"{'raw threshold ' + key:<22} {by_threshold[a][key]:28.1f} {by_threshold[b][key]:22.1f}")
    # every raw threshold that changes a decision: each distinct null_score_diff of either file
    cuts = sorted({r.features["null_score_diff"] for rs in sets.values() for r in rs if r.has_span})
    every = {name: f1_by_threshold(r, cuts) for name, r in sets.items()}
    at_default = (by_prior[a][f"{default:g}"], by_prior[b][f"{default:g}"])
    beaten = [t for t in every[a] if every[a][t] > at_default[0] and every[b][t] > at_default[1]]
    print(
        f"frontier: of {len(every[a])} raw thresholds (every distinct null_score_diff), "
        + (
            f"{len(beaten)} beat the default prior on both files: {', '.join(beaten[:5])}"
            if beaten
            else "none beats the default prior on both files"
        )
    )
    if args.results:
        out = {"model": str(reader.model_dir), "default_prior": default, "f1_by_prior": by_prior}
        out |= {"f1_by_raw_threshold": by_threshold, "beaten_by": beaten}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
