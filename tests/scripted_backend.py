"""A fake model whose logits are written by the test: exact, hand-made scores through the real Reader.

Each token's start/end logit is looked up by token id, so the same text gets the same logits in every
window it appears in; the CLS (null) logits can be a function of the window's tokens. The backend also
remembers what it was asked and whether the reader still holds its earlier outputs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

from spanqa import Reader
from spanqa.backends.model_dir import load_tokenizer


class ScriptedBackend:
    name = "scripted"
    input_names = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(
        self,
        vocab_size: int,
        start: dict[int, float] | None = None,
        end: dict[int, float] | None = None,
        null: Callable[[np.ndarray], float] | float = 0.0,
        default: float = -8.0,
    ):
        self.start = np.full(vocab_size, default, dtype=np.float32)
        self.end = np.full(vocab_size, default, dtype=np.float32)
        for table, given in ((self.start, start or {}), (self.end, end or {})):
            for token_id, value in given.items():
                table[token_id] = value
        self.null = null  # start+end at CLS; half goes to each
        self.batch_rows: list[int] = []
        self.outputs: list[weakref.ref] = []
        self.max_alive_before = 0  # most outputs of earlier calls (not the last) still alive at a call

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        older = self.outputs[:-2]  # the last call's two arrays may still be the reader's loop variables
        self.max_alive_before = max(self.max_alive_before, sum(r() is not None for r in older))
        start, end = self.start[ids], self.end[ids]
        for row in range(len(ids)):
            value = self.null(ids[row][mask[row] == 1]) if callable(self.null) else self.null
            start[row, 0] = end[row, 0] = value / 2
        self.batch_rows.append(len(ids))
        self.outputs += [weakref.ref(start), weakref.ref(end)]
        return start, end


def scripted_reader(model_dir, **backend_args) -> tuple[Reader, ScriptedBackend]:
    """A Reader with the tokenizer of `model_dir` and a ScriptedBackend (token logits given by id)."""
    tokenizer = load_tokenizer(model_dir)
    backend = ScriptedBackend(tokenizer.get_vocab_size(), **backend_args)
    return Reader(backend, tokenizer, pad_id=0, max_positions=128), backend


def token_id(reader: Reader, word: str) -> int:
    ids = reader.tokenizer.encode(word, add_special_tokens=False).ids
    assert len(ids) == 1, f"{word!r} is {len(ids)} tokens for this tokenizer"
    return ids[0]
