"""Long documents: full sliding window versus retrieval-first, on the same questions, in one run.

    python benchmarks/long_context.py [--data FILE] [--model DIR] [--limit 100] [--doc-tokens 30000]
                                      [--passages 4] [--max-windows 8] [--passage-chars 1000]

Documents are built from a SQuAD 2.0 file: each question is asked against its whole article (its
paragraphs joined by blank lines, 3k-13k tokens) and against a document of about --doc-tokens tokens made of
several articles (its own at a varying place). Every question is answered one at a time, as a user would
ask it; latency is the wall time of Reader.answer. "windows/q" is the model windows read per question, the
cost that retrieval cuts. One table; compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad-v2.0-dev-half.json"
WARMUP = 2


@dataclass
class Question:
    id: str
    text: str
    answers: list[str]
    article: int


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from spanqa.reading.reader import Reader
    from spanqa.retrieval.plan import Retrieval

    reader = Reader.load(args.model, backend=args.backend, threads=args.threads)
    articles, questions = load_articles(args.data)
    questions = random.Random(args.seed).sample(questions, min(args.limit, len(questions)))
    tokens = count_tokens(reader, articles)
    combined = combine_articles(articles, tokens, args.doc_tokens)
    kinds = {"article": articles, f"~{args.doc_tokens // 1000}k tokens": [c[0] for c in combined]}
    settings = {"full sliding window": Retrieval("never")}
    for k in args.passages:
        name = f"retrieval-first (k={k})" if len(args.passages) > 1 else "retrieval-first"
        settings[name] = Retrieval("auto", args.max_windows, k, args.passage_chars)
    rows = []
    for kind, docs in kinds.items():
        sizes = [_doc_tokens(tokens, combined, kind, q.article) for q in questions]
        for name, retrieval in settings.items():
            rows.append(run_setting(reader, questions, docs, retrieval, f"{kind}: {name}", sizes))
    print(format_table(rows, args, reader, len(questions)))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SQuAD 2.0 file (default: %(default)s)")
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--backend", default="torch")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--limit", type=int, default=100, help="questions, sampled from the whole file")
    p.add_argument("--doc-tokens", type=int, default=30000, help="size of the multi-article documents")
    p.add_argument(
        "--passages", type=lambda s: [int(x) for x in s.split(",")], default=[4], help="k, or k1,k2,..."
    )
    p.add_argument("--max-windows", type=int, default=8)
    p.add_argument("--passage-chars", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if not args.data.is_file():
        from spanqa.evaluation.squad import missing_file

        p.exit(2, f"{p.prog}: error: {missing_file(args.data)}\n")
    return args


def load_articles(path: Path) -> tuple[list[str], list[Question]]:
    """Each article's paragraphs joined by blank lines, and every question with its article's number."""
    from spanqa.evaluation.squad import load_squad

    article_of: dict[str, int] = {}
    paragraphs: dict[int, dict[int, str]] = {}  # article -> paragraph number -> text, in file order
    questions = []
    for ex in load_squad(path):
        article = article_of.setdefault(ex.title, len(article_of))
        paragraphs.setdefault(article, {}).setdefault(ex.paragraph, ex.context)
        questions.append(Question(ex.id, ex.question, [a.text for a in ex.answers], article))
    return ["\n\n".join(paragraphs[a].values()) for a in range(len(article_of))], questions


def count_tokens(reader, texts: list[str]) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(reader.tokenizer.to_str())  # a copy: the reader's is shared state
    tokenizer.no_truncation()
    return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def combine_articles(articles: list[str], tokens: list[int], target: int) -> list[tuple[str, int]]:
    """For each article, a document of about `target` tokens: it and the articles after it, with the
    article itself rotated to a different place in each document so answers are not always first."""
    out = []
    for i in range(len(articles)):
        members, total = [i], tokens[i]
        j = i
        while total < target and len(members) < len(articles):
            j = (j + 1) % len(articles)
            members.append(j)
            total += tokens[j]
        shift = i % len(members)
        members = members[shift:] + members[:shift]
        out.append(("\n\n".join(articles[m] for m in members), total))
    return out


def _doc_tokens(tokens: list[int], combined: list[tuple[str, int]], kind: str, article: int) -> int:
    return tokens[article] if kind == "article" else combined[article][1]


def run_setting(reader, questions: list[Question], docs: list[str], retrieval, name: str, sizes) -> dict:
    from tqdm import tqdm

    from spanqa.evaluation.metrics import compute_exact, compute_f1, gold_texts
    from spanqa.reading.reader import DEFAULT_DOC_STRIDE
    from spanqa.retrieval.plan import plan_reads

    windower = reader._windower(None, DEFAULT_DOC_STRIDE)
    for q in questions[:WARMUP]:
        reader.answer(q.text, docs[q.article], retrieve=retrieval)
    latencies, exact, f1, has_f1, no_acc, windows = [], [], [], [], [], []
    for q in tqdm(questions, desc=name, unit="q", file=sys.stderr):
        doc = docs[q.article]
        t0 = time.perf_counter()
        pred = reader.answer(q.text, doc, retrieve=retrieval)
        latencies.append(time.perf_counter() - t0)
        text = pred.best.text if pred.best else ""
        golds = gold_texts(q.answers)
        exact.append(max(compute_exact(g, text) for g in golds))
        f1.append(max(compute_f1(g, text) for g in golds))
        (has_f1 if golds != [""] else no_acc).append(f1[-1])
        item = plan_reads([(q.text, doc)], windower, retrieval).items[0]
        read = [item[1]] if isinstance(item[1], str) else item[1]
        windows.append(len(windower([q.text] * len(read), read)))
    ms = np.asarray(latencies) * 1000
    return {
        "setting": name,
        "questions": len(questions),
        "doc_tokens": float(np.median(sizes)),
        "EM": 100 * float(np.mean(exact)),
        "F1": 100 * float(np.mean(f1)),
        "HasAns_F1": 100 * float(np.mean(has_f1)) if has_f1 else float("nan"),
        "NoAns_acc": 100 * float(np.mean(no_acc)) if no_acc else float("nan"),
        "windows_per_q": float(np.mean(windows)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
    }


def format_table(rows: list[dict], args: argparse.Namespace, reader, n: int) -> str:
    from spanqa.backends.onnx_backend import cpu_cores
    from spanqa.evaluation.bench import cpu_model

    head = (
        f"long_context: {n} questions from {args.data.name} (seed {args.seed}); model "
        f"{reader.model_dir}; backend {reader.backend.name}; threads {args.threads or 'default'}; "
        f"{cpu_cores()} cores usable ({cpu_model()}); max_windows "
        f"{args.max_windows}, passage_chars {args.passage_chars}"
    )
    lines = [
        head,
        "",
        "| document: reading | doc tokens (median) | EM | F1 | HasAns F1 | NoAns acc | windows/q "
        "| p50 ms | p95 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['doc_tokens']:.0f} | {r['EM']:.1f} | {r['F1']:.1f} "
            f"| {r['HasAns_F1']:.1f} | {r['NoAns_acc']:.1f} | {r['windows_per_q']:.1f} "
            f"| {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
