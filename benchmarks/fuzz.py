"""Fuzz the HTTP API from its own OpenAPI schema: many cases, valid and invalid, in-process against the app.

    python benchmarks/fuzz.py [--model DIR] [--backend torch] [--cases 10000] [--seed 0]

The app (create_app with the default limits and a small document index for /v1/ask) is driven in-process
by schemathesis; half the cases are valid data, half invalid. Every response is checked: no 5xx, status
code and content type documented, body matching the response schema, invalid data refused, and every 4xx a
JSON error with a one-line message whose 422s name the field. Failures are counted, not stopped at (the
test suite's short run in tests/test_service_fuzz.py stops at the first). Prints one table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# Multipart uploads keep every check but the rejection of "invalid" data (as tests/test_service_fuzz.py).
FILE_ENDPOINTS = {"/v1/answer/file", "/v1/documents/extract"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: spanqa's shipped model)")
    p.add_argument("--backend", default="torch")
    p.add_argument("--cases", type=int, default=10_000, help="cases in all, split evenly between the modes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.cases < 2:
        p.error("--cases must be >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import schemathesis
    from fastapi.testclient import TestClient
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    from spanqa import Reader
    from spanqa.retrieval.index import DocumentIndex
    from spanqa.service.app import ServiceSettings, create_app

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
        errors_name_the_field,
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, DocumentIndex(Path(tmp) / "docs.db") as index:
        index.add_texts(
            [
                (
                    "lighthouse",
                    "The lighthouse was first lit on 12 March 1849, using a lamp that burned oil.",
                ),
                ("museum", "The keeper's cottage is a museum, open from April to October."),
            ]
        )
        reader = Reader.load(args.model, backend=args.backend)
        app = create_app(reader, ServiceSettings(timeout_s=120.0), index=index)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [op.ok() for op in schema.get_all_operations()]
        with TestClient(app, raise_server_exceptions=False):
            for mode in schemathesis.GenerationMode:
                rows.append(run_mode(mode, operations, checks, args))
    print(table(rows, args, reader.backend.name))
    return 0 if not any(r[3] for r in rows) else 1


def run_mode(mode, operations: list, checks: list, args: argparse.Namespace) -> tuple:
    """(mode, cases, status counts, failed checks by kind, an example message per kind, seconds)."""
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    examples: dict[str, str] = {}

    @seed(args.seed)
    @given(st.sampled_from(operations).flatmap(lambda op: op.as_strategy(generation_mode=mode)))
    @settings(
        max_examples=args.cases // 2, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def fuzz(case) -> None:
        response = case.call()
        statuses[response.status_code] += 1
        these = checks
        if case.operation.path in FILE_ENDPOINTS:  # any bytes are a file: "violating" file data is valid too
            these = [c for c in checks if getattr(c, "__name__", "") != "negative_data_rejection"]
        try:
            case.validate_response(response, checks=these)
        except (Exception, BaseExceptionGroup) as e:  # counted, not raised: the run goes on
            for failure in getattr(e, "exceptions", [e]):
                kind = f"{case.operation.label}: {type(failure).__name__}"
                failures[kind] += 1
                examples.setdefault(kind, " ".join(str(failure).split())[:200])

    began = time.perf_counter()
    fuzz()
    seconds = time.perf_counter() - began
    print(f"[{mode.value}] {sum(statuses.values())} cases in {seconds:.0f} s", file=sys.stderr)
    return mode.value, sum(statuses.values()), statuses, failures, examples, seconds


def errors_name_the_field(ctx, response, case) -> bool | None:
    """Every 4xx is a JSON error with a one-line message; a 422 names the field (or says it is the body)."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and body["error"] and body["message"], body
    assert "\n" not in body["message"]
    if response.status_code == 422:
        named = isinstance(body.get("field"), str) and body["field"]
        assert named or "body" in body["message"], body
    return True


def table(rows: list, args: argparse.Namespace, backend: str) -> str:
    lines = [
        f"API fuzzing (schemathesis, in-process): {sum(r[1] for r in rows)} cases, seed {args.seed}, "
        f"backend {backend}",
        "",
        "| data | cases | statuses | failed checks | seconds |",
        "|---|---:|---|---:|---:|",
    ]
    for mode, cases, statuses, failures, _, seconds in rows:
        counts = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        lines.append(f"| {mode} | {cases} | {counts} | {sum(failures.values())} | {seconds:.0f} |")
    for mode, _, _, failures, examples, _ in rows:
        for kind, n in failures.most_common():
            lines.append(f"- {mode}: {kind} x{n}: {examples[kind]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
