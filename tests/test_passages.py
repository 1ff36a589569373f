"""Passages keep exact offsets, cover the whole text, stay under their size, and end on natural breaks."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa import InputError
from spanqa.retrieval.passages import split_passages

# Text built from the characters that matter to the splitter: words, sentence ends, quotes, line breaks,
# blank lines, Unicode spaces, CJK full stops and astral characters.
pieces = st.sampled_from(
    ["word", "Zürich", "北京", "😀", ".", "!", "?", "…", "。", '"', "”", ")", " ", "  ", "\t", "\n", "\n\n",
     "\r\n", "\u00a0", "\u2028", "x" * 30]
)  # fmt: skip
texts = st.lists(pieces, max_size=200).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=texts, max_chars=st.integers(1, 120))
def test_passages_are_exact_ordered_bounded_and_cover_the_text(text, max_chars):
    passages = split_passages(text, max_chars)
    covered = [False] * len(text)
    previous_end = 0
    for p in passages:
        assert text[p.start : p.end] == p.text
        assert 0 < len(p.text) <= max_chars
        assert p.text == p.text.strip()
        assert p.start >= previous_end
        previous_end = p.end
        for i in range(p.start, p.end):
            covered[i] = True
    missed = [c for c, hit in zip(text, covered) if not hit and not c.isspace()]
    assert missed == []


@given(text=st.text(max_size=300), max_chars=st.integers(1, 50))
def test_any_unicode_text_keeps_offsets(text, max_chars):
    for p in split_passages(text, max_chars):
        assert text[p.start : p.end] == p.text and len(p.text) <= max_chars


def test_paragraphs_are_kept_whole_when_they_fit():
    paragraphs = ["First paragraph. It has two sentences.", "Second one.", "Third, a bit longer than that."]
    text = "\n\n".join(paragraphs)
    assert [p.text for p in split_passages(text, 40)] == paragraphs


def test_a_long_paragraph_is_cut_at_sentence_ends():
    sentences = [f"Sentence number {i} says something." for i in range(6)]
    text = " ".join(sentences)
    passages = split_passages(text, 80)
    assert len(passages) > 1
    for p in passages:
        assert p.text.endswith(".")
        assert p.text.split(". ")[0] + "." in sentences or p.text in sentences


def test_closing_quotes_stay_with_their_sentence():
    text = 'He said "stop." Then he left! "Why?" she asked.'
    passages = split_passages(text, 20)
    assert '"stop."' in passages[0].text
    assert "".join(p.text for p in passages).replace(" ", "") == text.replace(" ", "")


def test_passages_are_balanced_not_a_tiny_tail():
    text = " ".join(["A sentence of thirty characters."] * 7)  # ~230 characters
    lengths = [len(p.text) for p in split_passages(text, 100)]
    assert max(lengths) - min(lengths) <= 40


def test_a_word_longer_than_a_passage_is_cut():
    text = "short " + "y" * 25 + " end"
    passages = split_passages(text, 10)
    assert all(len(p.text) <= 10 for p in passages)
    assert "".join(p.text for p in passages).replace(" ", "") == text.replace(" ", "")


def test_empty_and_blank_text_have_no_passages():
    assert split_passages("") == []
    assert split_passages(" \n\n\t ") == []


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100"])
def test_passage_size_must_be_a_positive_integer(bad):
    with pytest.raises(InputError, match="passage_chars"):
        split_passages("some text", bad)
