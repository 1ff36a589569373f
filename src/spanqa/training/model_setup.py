"""The model side of training: loading the base for fine-tuning, its inputs, and saving the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from spanqa.errors import InputError

TOKENIZER_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
)


DROPOUT_FIELDS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "hidden_dropout",
    "classifier_dropout",
)


def set_dropout(model: Any, p: float | None) -> None:
    """Set every dropout of the model, and its config, to p (None leaves them as they are)."""
    import torch

    if p is None:
        return
    for name in DROPOUT_FIELDS:
        if isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, p)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    if hasattr(model.config, "attention_probs_dropout_prob"):
        model.config.attention_probs_dropout_prob = p


def accepted_inputs(model: Any) -> set[str]:
    import inspect

    params = inspect.signature(model.forward).parameters
    return {n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params}


def save_model(model, tokenizer, base_dir: Path, out: Path, dtype: str) -> None:
    import torch

    if dtype not in ("float32", "float16"):
        raise InputError(f"save dtype must be float32 or float16, got {dtype}")
    model.eval()
    model = model.to("cpu")  # a model trained on a GPU is saved like any other
    if dtype == "float16":
        model = model.to(torch.float16)
    model.save_pretrained(str(out))
    if dtype == "float16":
        # Half only to halve the file: the config says float32, so that loaders which follow it (transformers'
        # dtype="auto", its pipelines) compute in float32 as spanqa does. Read as float16 on a CPU, the
        # model ran 6x slower in the HF pipeline.
        config_file = out / "config.json"
        config = json.loads(config_file.read_text())
        config["dtype"] = "float32"
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(out / "tokenizer.json"))
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out / name)
