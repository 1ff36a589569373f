"""Finding a model directory, its fast tokenizer, and its card (`spanqa.json`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from spanqa.errors import ModelError

DEFAULT_MODEL_DIR = Path(__file__).parent.parent / "model"
CARD_NAME = "spanqa.json"
# Files from which transformers can build a fast tokenizer when tokenizer.json is missing.
SLOW_TOKENIZER_FILES = (
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spm.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def resolve_model(model: str | os.PathLike | None) -> Path:
    """A local model directory: the one named, the default one, or a hub id downloaded when online."""
    if model is None:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise ModelError(
                f"spanqa's default model is missing from {DEFAULT_MODEL_DIR}; "
                "pass a model directory (--model DIR on the command line)"
            )
        return DEFAULT_MODEL_DIR
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a model directory: it has no config.json")
        return path
    if path.exists():
        raise ModelError(f"{path} is a file; a model is a directory with config.json and weights")
    name = str(model)
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise ModelError(f"model directory not found: {name}")
    return _download(name)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as e:  # any failure to fetch means the same thing to the caller
        raise ModelError(
            f"model {repo_id!r} is not a local directory and could not be downloaded "
            f"({type(e).__name__}); offline, pass the path of a downloaded model directory"
        ) from None


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The model's fast tokenizer; slow tokenizers cannot give character offsets and are refused."""
    file = model_dir / "tokenizer.json"
    if file.is_file():
        try:
            return Tokenizer.from_file(str(file))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{file} cannot be read as a fast tokenizer: {first}") from None
    if not any((model_dir / name).is_file() for name in SLOW_TOKENIZER_FILES):
        # transformers would otherwise build an empty tokenizer of the model's type, reading all text as [UNK]
        raise ModelError(
            f"no tokenizer in {model_dir}: it needs tokenizer.json (or the files of a tokenizer)"
        )
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    except Exception as e:  # transformers' messages run over several lines: keep the first
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(
            f"no fast tokenizer in {model_dir}: it has no tokenizer.json and transformers could not build "
            f"one ({type(e).__name__}: {first}); spanqa needs a fast tokenizer for character offsets"
        ) from None
    if not getattr(tok, "is_fast", False) or not hasattr(tok, "backend_tokenizer"):
        raise ModelError(
            f"the tokenizer in {model_dir} is a slow (Python) tokenizer, which gives no character offsets; "
            "spanqa needs a fast tokenizer (tokenizer.json)"
        )
    return tok.backend_tokenizer


def check_weights(model_dir: Path) -> None:
    """Every safetensors weight file opens (its header read, nothing loaded), else a ModelError naming it.

    A truncated download or a random file would otherwise surface as a SafetensorError deep inside
    transformers (and the ONNX exporter), after seconds of loading.
    """
    from safetensors import SafetensorError, safe_open

    for file in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="numpy") as weights:
                weights.keys()
        except (SafetensorError, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(
                f"{file} is not a readable safetensors file ({first}); it may be truncated or corrupt: "
                "copy or download it again"
            ) from None


def read_config(model_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {model_dir / 'config.json'}: {e}") from None


def input_spec(config: dict[str, Any]) -> tuple[int, bool]:
    """(padding id, whether the model reads token types): what every batch for this model must respect.

    Models with fewer than two token types get all-zero type ids: a tokenizer may still mark the context
    1, which would index past their type embeddings (or mean nothing to them).
    """
    pad_id = config.get("pad_token_id")
    return (int(pad_id) if pad_id is not None else 0), int(config.get("type_vocab_size", 2) or 0) > 1


def max_positions(config: dict[str, Any]) -> int:
    """The longest window the model can read."""
    n = int(config.get("max_position_embeddings") or 512)
    if config.get("model_type") in ("roberta", "longformer", "xlm-roberta", "camembert"):
        n -= 2  # their positions start after the padding index
    return n


def read_card(model_dir: Path) -> dict[str, Any]:
    """The model's spanqa card; empty for a model spanqa did not train."""
    file = model_dir / CARD_NAME
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {file}: {e}") from None


def write_card(model_dir: Path, card: dict[str, Any]) -> None:
    """Replace the card atomically so an interrupted write never leaves half a file."""
    file = model_dir / CARD_NAME
    tmp = file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, file)


def update_card(model_dir: Path, **fields: Any) -> dict[str, Any]:
    card = read_card(model_dir)
    card.update(fields)
    write_card(model_dir, card)
    return card
