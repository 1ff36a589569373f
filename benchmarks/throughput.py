"""Throughput of spanqa's CPU backends: the same code as `spanqa bench`, runnable from a checkout.

    python benchmarks/throughput.py [--model DIR] [--data FILE] [--limit 1000] [--configs all] [--record]

Each configuration runs in its own process on the first --limit questions; one table goes to stdout and to
benchmarks/results/throughput.md. Compare rows of one run only: other load on the machine moves all numbers.
"""

from __future__ import annotations

import sys

from spanqa.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
