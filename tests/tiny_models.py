"""Tiny random extractive-QA checkpoints built from configs, with tokenizers trained on a few sentences.

Nothing is downloaded: each model is a 2-layer transformer with random weights, saved as a normal
Hugging Face model directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json), so
the Reader loads it like any other. Each architecture gets the kind of tokenizer its real checkpoints use:
WordPiece (BERT, DistilBERT, ELECTRA), byte-level BPE with the `<s> A </s></s> B </s>` pair template
(RoBERTa, Longformer), and a SentencePiece-style Unigram with Metaspace (DeBERTa-v2/v3).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

CORPUS = [
    "The Old Point lighthouse stands on a granite headland at the mouth of the harbour.",
    "Construction began in 1846 under the engineer Margaret Hale.",
    "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil.",
    "Who built the tower? When was it lit? What did the lamp burn? How tall is it?",
    "Café, naïve, résumé, Zürich, São Paulo, 北京, 東京, Москва, القاهرة, ירושלים, 😀 🚀.",
    "Numbers like 3.14, 1,000 and 42% appear in text; so do e-mail@example.com and URLs.",
]

KINDS = ("bert", "roberta", "distilbert", "deberta-v2", "electra", "longformer")
WORDPIECE_KINDS = ("bert", "distilbert", "electra")
BYTE_BPE_KINDS = ("roberta", "longformer")

# Real checkpoints' special-token order, so pad/cls/sep ids are the ones those models expect.
_BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_ROBERTA_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_DEBERTA_SPECIAL = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]

MAX_POSITIONS = 128  # tokens per window; RoBERTa-style models need 2 more position embeddings


def _bert_pair_template(tok):
    """`[CLS] A [SEP] B [SEP]`, segment B marked with token type 1 (BERT, ELECTRA, DeBERTa)."""
    from tokenizers import processors

    return processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )


def _wordpiece_tokenizer(lowercase: bool = True):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=_BERT_SPECIAL, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = _bert_pair_template(tok)
    tok.decoder = decoders.WordPiece()
    return tok


def _byte_bpe_tokenizer():
    """GPT-2/RoBERTa style: every byte is in the alphabet, so nothing is ever unknown."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=_ROBERTA_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True
    )
    return tok


def _unigram_tokenizer():
    """DeBERTa-v3 style SentencePiece: Unigram with Metaspace, the normalizer transformers builds for it."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
            normalizers.NFC(),
            normalizers.Strip(left=False, right=True),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=_DEBERTA_SPECIAL, unk_token="[UNK]", show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = _bert_pair_template(tok)
    return tok


def _tokenizer(kind: str):
    if kind in WORDPIECE_KINDS:
        return _wordpiece_tokenizer(lowercase=kind != "distilbert")  # distilbert: like distilbert-base-cased
    if kind in BYTE_BPE_KINDS:
        return _byte_bpe_tokenizer()
    if kind == "deberta-v2":
        return _unigram_tokenizer()
    raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(KINDS)}")


def _config(kind: str, tok: Any):
    """A random 2-layer config of the architecture, its special-token ids taken from the tokenizer."""
    import transformers

    vocab = tok.get_vocab_size()
    small = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "hidden_size": 32}
    if kind in BYTE_BPE_KINDS:
        ids = {
            "pad_token_id": tok.token_to_id("<pad>"),
            "bos_token_id": tok.token_to_id("<s>"),
            "eos_token_id": tok.token_to_id("</s>"),
        }
        extra = {"type_vocab_size": 1, "max_position_embeddings": MAX_POSITIONS + 2}
        if kind == "roberta":
            return transformers.RobertaConfig(vocab_size=vocab, **small, **ids, **extra)
        # attention_window: the model pads every batch to a multiple of it, so keep it small
        return transformers.LongformerConfig(
            vocab_size=vocab, **small, **ids, **extra, sep_token_id=ids["eos_token_id"], attention_window=8
        )
    pad = tok.token_to_id("[PAD]")
    if kind == "bert":
        return transformers.BertConfig(
            vocab_size=vocab, **small, max_position_embeddings=MAX_POSITIONS, pad_token_id=pad
        )
    if kind == "electra":
        return transformers.ElectraConfig(
            vocab_size=vocab,
            embedding_size=16,
            **small,
            max_position_embeddings=MAX_POSITIONS,
            pad_token_id=pad,
        )
    if kind == "distilbert":
        return transformers.DistilBertConfig(
            vocab_size=vocab,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=MAX_POSITIONS,
            pad_token_id=pad,
        )
    if kind == "deberta-v2":  # shaped like deberta-v3: relative attention, no absolute positions or types
        return transformers.DebertaV2Config(
            vocab_size=vocab,
            **small,
            max_position_embeddings=MAX_POSITIONS,
            pad_token_id=pad,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=16,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
        )
    raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(KINDS)}")


def _tokenizer_config(kind: str) -> dict[str, Any]:
    """What transformers' AutoTokenizer needs to load the same tokenizer.json (spanqa itself does not)."""
    names = dict(zip(("cls", "pad", "sep", "unk", "mask"), ("<s>", "<pad>", "</s>", "<unk>", "<mask>")))
    if kind not in BYTE_BPE_KINDS:
        names = {"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}
    cfg: dict[str, Any] = {f"{k}_token": v for k, v in names.items()}
    cfg.update(tokenizer_class="PreTrainedTokenizerFast", model_max_length=MAX_POSITIONS)
    cfg["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    if kind in ("distilbert", "roberta", "longformer"):  # these models take no token_type_ids
        cfg["model_input_names"] = ["input_ids", "attention_mask"]
    return cfg


def build_tiny_model(kind: str, out: Path, seed: int = 0, **config_overrides: Any) -> Path:
    """Save a tiny random QA model of the given architecture to `out` and return `out`.

    `config_overrides` change the config (e.g. type_vocab_size=1) before the weights are made.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bars in test output
    tok = _tokenizer(kind)
    config = _config(kind, tok)
    for name, value in config_overrides.items():
        setattr(config, name, value)
    torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(_tokenizer_config(kind), indent=2), encoding="utf-8"
    )
    return out


# ---- process-wide caches: each tiny model is built and loaded once per test run --------------------------

_dirs: dict[str, Path] = {}
_readers: dict[str, Any] = {}
_root: Path | None = None


def tiny_model_dir(kind: str) -> Path:
    """The directory of a tiny model of `kind`, built on first use in a temporary folder of this process."""
    global _root
    if kind not in _dirs:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix="spanqa-tiny-"))
            atexit.register(shutil.rmtree, _root, True)
        _dirs[kind] = build_tiny_model(kind, _root / kind)
    return _dirs[kind]


def tiny_reader(kind: str):
    """A loaded Reader of the tiny `kind` model, shared by all tests of the process (it is stateless)."""
    if kind not in _readers:
        from spanqa import Reader

        _readers[kind] = Reader.load(tiny_model_dir(kind), threads=1)  # tiny models: 1 thread is fastest
    return _readers[kind]
