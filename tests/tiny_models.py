"""Tiny random extractive-QA checkpoints built from configs, with tokenizers trained on a few sentences.

Nothing is downloaded: each model is a 2-layer transformer with random weights, saved as a normal
Hugging Face model directory with a fast tokenizer (tokenizer.json), so the Reader loads it like any other.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The Old Point lighthouse stands on a granite headland at the mouth of the harbour.",
    "Construction began in 1846 under the engineer Margaret Hale.",
    "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil.",
    "Who built the tower? When was it lit? What did the lamp burn? How tall is it?",
    "Café, naïve, résumé, Zürich, São Paulo, 北京, 東京, Москва, القاهرة, ירושלים, 😀 🚀.",
    "Numbers like 3.14, 1,000 and 42% appear in text; so do e-mail@example.com and URLs.",
]


def _wordpiece_tokenizer(lowercase: bool = True):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=special, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def build_tiny_model(kind: str, out: Path, seed: int = 0) -> Path:
    """Save a tiny random QA model of the given architecture to `out` and return `out`."""
    import torch
    from transformers import AutoModelForQuestionAnswering, BertConfig

    torch.manual_seed(seed)
    if kind != "bert":
        raise ValueError(f"unknown tiny model kind {kind!r}")
    tok = _wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    model = AutoModelForQuestionAnswering.from_config(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save(str(out / "tokenizer.json"))
    return out
