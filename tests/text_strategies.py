"""Hypothesis strategies for the text a reader meets in the wild, and the hard cases of Unicode.

Texts mix words the tiny tokenizers know with characters that break naive offset handling: accents
(precomposed and combining), CJK, emoji (with ZWJ, skin tones, flags), right-to-left scripts and marks,
every kind of space and line break, characters that change length when lowercased or normalized,
characters tokenizers delete, and the literal text of special tokens.
"""

from __future__ import annotations

from hypothesis import strategies as st

from tiny_models import CORPUS

WORDS = sorted({w for line in CORPUS for w in line.split()})

TRICKY = [
    # spaces and line breaks: Python and the tokenizers disagree on some of them
    " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2009", "\u3000", "\u2028", "\u0085", "\x0b", "\x0c",
    "\x1c", "\x1f",
    # accents, precomposed and combining; characters that grow when lowercased or NFC/NFKC-normalized
    "é", "e\u0301", "a\u0308\u0323", "\u0301", "İ", "ß", "ﬁ", "Ω", "Å", "ǅ", "ﾊﾟ", "①", "²",
    # CJK, Hangul (precomposed and jamo), Thai
    "北京", "東京タワー", "한국어", "\u1100\u1161\u11a8", "ภาษาไทย",
    # emoji: plain, ZWJ sequence, skin tone, flag, keycap, variation selector
    "😀", "👩\u200d🔬", "👍🏽", "🇫🇷", "1\ufe0f\u20e3", "❤\ufe0f",
    # right-to-left scripts and bidi controls
    "שלום", "مرحبا", "\u200f", "\u202e", "\u2066",
    # characters tokenizers delete or treat specially
    "\u200b", "\ufeff", "\u00ad", "\ufffd", "\x01", "\x7f",
    # the literal text of special tokens must stay text
    "[SEP]", "[CLS]", "[PAD]", "</s>", "<s>", "<pad>", "▁", "##",
    # punctuation next to words
    ".", ",", "?", "(", ")", "\"", "'", "’", "«", "»", "—", "-", "…",
]  # fmt: skip

_any_char = st.characters(codec="utf-8", exclude_characters="\x00")
_piece = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(TRICKY),
    st.text(_any_char, min_size=1, max_size=3),
)


def texts(min_pieces: int = 1, max_pieces: int = 40) -> st.SearchStrategy[str]:
    """Text with at least one non-space character and no NUL (the reader refuses both, tested apart)."""
    return (
        st.lists(_piece, min_size=min_pieces, max_size=max_pieces)
        .map("".join)
        .filter(lambda s: bool(s.strip()))
    )


def questions() -> st.SearchStrategy[str]:
    return texts(1, 4)
