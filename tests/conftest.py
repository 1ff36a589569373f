"""Shared fixtures: tiny models built from configs (no downloads), and the shipped default model."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "src" / "spanqa" / "model"
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT QA model with a small WordPiece tokenizer."""
    from tiny_models import build_tiny_model

    return build_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.fail(f"the shipped default model is missing from {DEFAULT_MODEL}")
    return DEFAULT_MODEL


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Exports and run journals go to a temporary cache, never the user's ~/.cache/spanqa."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("spanqa-cache")
        mp.setenv("SPANQA_CACHE", str(root))
        yield root
