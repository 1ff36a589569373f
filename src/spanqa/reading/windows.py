"""Question + context -> model windows that remember where each token came from.

The whole question goes into every window; the context is cut into overlapping windows of at most
`max_seq_len` tokens. Each window keeps, for every token, its character span in the caller's context
(or -1 for question, special and padding tokens), so decoding can point back into the original string.
Training and inference use this same module, so labels and predictions agree on token positions.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import numpy as np
import tokenizers
from tokenizers import Encoding, Tokenizer

from spanqa.errors import DependencyError, InputError

NOT_CONTEXT = -1
# These releases stop tokenizing at max_length when truncating, so the overflowing windows of a long text
# come out short or missing (huggingface/tokenizers#2091): the end of a context would never be read.
BROKEN_TOKENIZERS = ("0.23.0", "0.23.1", "0.23.2")


def check_tokenizers(version: str = tokenizers.__version__) -> None:
    """Refuse a tokenizers release whose overflowing windows lose text (DependencyError says what to do)."""
    if version in BROKEN_TOKENIZERS:
        raise DependencyError(
            f"tokenizers {version} drops the ends of long texts when cutting them into windows "
            "(huggingface/tokenizers#2091); install another: pip install 'tokenizers>=0.23.3,<0.24'"
        )


@dataclass
class Windows:
    """Ragged windows: one entry per window, each array of that window's own length."""

    ids: list[np.ndarray] = field(default_factory=list)
    type_ids: list[np.ndarray] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)  # (n, 2) char spans in the context, -1 if not
    item: list[int] = field(default_factory=list)  # which (question, context) pair the window reads

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


class Windower:
    """Cuts (question, context) pairs into windows with one tokenizer; safe to share across threads."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_seq_len: int = 384,
        doc_stride: int = 128,
        lock: threading.Lock | None = None,
    ):
        """`lock` guards the tokenizer, whose truncation settings are global state: windowers that share a
        tokenizer across threads must share its lock (Reader gives its windowers one)."""
        if max_seq_len < 8:
            raise InputError(f"max_seq_len must be at least 8 tokens, got {max_seq_len}")
        if doc_stride < 0:
            raise InputError(f"doc_stride must be >= 0, got {doc_stride}")
        check_tokenizers()
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.doc_stride = doc_stride
        self.n_special = tokenizer.num_special_tokens_to_add(is_pair=True)
        self._lock = lock or threading.Lock()
        self._text_specials, self._unk_id = _text_specials(tokenizer)

    @property
    def max_question_tokens(self) -> int:
        """The longest question that still leaves a quarter of the window for context."""
        return self.max_seq_len - self.n_special - max(1, self.max_seq_len // 4)

    def __call__(self, questions: list[str], contexts: list[str]) -> Windows:
        if len(questions) != len(contexts):
            raise ValueError("questions and contexts must have the same length")
        with self._lock:
            # "[SEP]" or "</s>" typed in a text is text: as a special token it would split the context
            # (and break models that count separators, like Longformer) or end up inside an answer.
            self.tokenizer.encode_special_tokens = True
            self.tokenizer.no_padding()
            self.tokenizer.no_truncation()
            q_lens = [len(e.ids) for e in self.tokenizer.encode_batch(questions, add_special_tokens=False)]
            strides = [self._stride(n) for n in q_lens]
            encodings: list[list[Encoding]] = [[] for _ in questions]
            for stride in sorted(set(strides)):
                members = [i for i, s in enumerate(strides) if s == stride]
                self.tokenizer.enable_truncation(
                    self.max_seq_len, stride=stride, strategy="only_second", direction="right"
                )
                pairs = [(questions[i], contexts[i]) for i in members]
                for i, enc in zip(members, self.tokenizer.encode_batch(pairs)):
                    encodings[i] = [enc, *enc.overflowing]
            self.tokenizer.no_truncation()
        out = Windows()
        for i, encs in enumerate(encodings):
            for enc in encs:
                out.ids.append(self._as_text_ids(enc))
                out.type_ids.append(np.asarray(enc.type_ids, dtype=np.int64))
                out.offsets.append(context_offsets(enc))
                out.item.append(i)
        return out

    def _as_text_ids(self, enc: Encoding) -> np.ndarray:
        """The window's ids, with special tokens matched inside the question or context read as [UNK].

        SentencePiece-style vocabularies hold "[SEP]" or "[CLS]" as ordinary pieces, so typed text can
        become a separator even when special tokens are not split off; the model must never see one there.
        """
        ids = np.asarray(enc.ids, dtype=np.int64)
        if self._unk_id is not None and len(self._text_specials):
            in_text = np.asarray([s is not None for s in enc.sequence_ids], dtype=bool)
            ids[in_text & np.isin(ids, self._text_specials)] = self._unk_id
        return ids

    def _stride(self, question_tokens: int) -> int:
        """Overlap in tokens between windows: doc_stride, shrunk when a long question leaves less room."""
        if question_tokens > self.max_question_tokens:
            raise InputError(
                f"question is {question_tokens} tokens long; with max_seq_len={self.max_seq_len} a question "
                f"may have at most {self.max_question_tokens} tokens (a quarter of each window is kept "
                "for the context)"
            )
        room = self.max_seq_len - self.n_special - question_tokens
        return min(self.doc_stride, room // 2)


def _text_specials(tokenizer: Tokenizer) -> tuple[np.ndarray, int | None]:
    """Ids of the special tokens that must not come from text (all but [UNK]), and the [UNK] id."""
    model = json.loads(tokenizer.to_str()).get("model", {})
    unk = model.get("unk_id")  # Unigram names its unknown piece by id, the others by token
    if unk is None and model.get("unk_token") is not None:
        unk = tokenizer.token_to_id(model["unk_token"])
    specials = [i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special and i != unk]
    return np.asarray(sorted(specials), dtype=np.int64), unk


def context_offsets(enc: Encoding) -> np.ndarray:
    """Character spans of context tokens; -1 for question, special and padding tokens."""
    offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
    seq = np.asarray([-1 if s is None else s for s in enc.sequence_ids], dtype=np.int64)
    offsets[seq != 1] = NOT_CONTEXT
    # Some tokenizers give zero-width spans (e.g. a removed control character): they cannot start or end
    # an answer, so they are treated like non-context tokens.
    offsets[offsets[:, 1] <= offsets[:, 0]] = NOT_CONTEXT
    return offsets


def answer_tokens(offsets: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """Token positions of an answer in one window, or (0, 0) when the window does not hold all of it.

    Position 0 is the CLS token, the model's "no answer here" label.
    """
    in_ctx = offsets[:, 0] >= 0
    idx = np.nonzero(in_ctx)[0]
    if len(idx) == 0 or end_char <= start_char:
        return 0, 0
    first, last = idx[0], idx[-1]
    if offsets[first, 0] > start_char or offsets[last, 1] < end_char:
        return 0, 0
    # the token that contains the answer's first character (or the first one after it) ...
    starts = idx[offsets[idx, 1] > start_char]
    # ... and the token that contains its last character (or the last one before it).
    ends = idx[offsets[idx, 0] < end_char]
    if len(starts) == 0 or len(ends) == 0 or starts[0] > ends[-1]:
        return 0, 0
    return int(starts[0]), int(ends[-1])


def pad_batch(
    windows: Windows, index: list[int] | np.ndarray, pad_id: int, token_types: bool = True
) -> dict[str, np.ndarray]:
    """The chosen windows as padded arrays, padded only to the longest of them.

    `token_types=False` (models with one token type, see model_dir.input_spec) leaves every type id 0.
    """
    length = max(len(windows.ids[i]) for i in index)
    n = len(index)
    input_ids = np.full((n, length), pad_id, dtype=np.int64)
    type_ids = np.zeros((n, length), dtype=np.int64)
    mask = np.zeros((n, length), dtype=np.int64)
    for row, i in enumerate(index):
        k = len(windows.ids[i])
        input_ids[row, :k] = windows.ids[i]
        if token_types:
            type_ids[row, :k] = windows.type_ids[i]
        mask[row, :k] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids}


def pad_offsets(windows: Windows, index: list[int] | np.ndarray, length: int) -> np.ndarray:
    out = np.full((len(index), length, 2), NOT_CONTEXT, dtype=np.int64)
    for row, i in enumerate(index):
        out[row, : len(windows.offsets[i])] = windows.offsets[i]
    return out
