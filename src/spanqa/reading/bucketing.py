"""Windows grouped by length into model batches, so that padding stays a small share of the tokens.

A batch costs as much as its longest window times its rows: mixing a 60-token window with a 380-token one
spends most of the work on padding. Windows are sorted by length and cut into batches of at most
`batch_size` rows whose padding is at most `max_padding` of the tokens the model reads.
"""

from __future__ import annotations

import numpy as np

MAX_PADDING = 0.1


# Windows per forward pass. Measured best or within 2% of best for torch, onnx and onnx-int8 on 2 cores
# (benchmarks/batch_size.py; 32 was 10-18% slower): small batches stay in cache, and one window already keeps
# both cores busy.
BATCH_SIZE = 8


def length_batches(
    lengths: np.ndarray, batch_size: int, max_padding: float = MAX_PADDING
) -> list[np.ndarray]:
    """Window indices per batch, shortest first; each batch pads at most max_padding of its tokens."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches: list[np.ndarray] = []
    start, real = 0, 0
    for i, w in enumerate(order):
        rows, longest = i - start + 1, int(lengths[w])  # sorted: the newest window is the longest
        real += longest
        if rows > batch_size or rows * longest - real > max_padding * rows * longest:
            batches.append(order[start:i])
            start, real = i, longest
    if start < len(order):
        batches.append(order[start:])
    return batches


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of the tokens the model reads that are padding."""
    lengths = np.asarray(lengths, dtype=np.int64)
    read = sum(len(b) * int(lengths[b].max()) for b in batches if len(b))
    return 1.0 - float(lengths.sum()) / read if read else 0.0
