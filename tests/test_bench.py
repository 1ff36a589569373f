"""`spanqa bench --record` for auto, int8 without its fp32 re-read, spinning, the CPU line of timings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spanqa import InputError, Reader
from spanqa.backends.model_dir import read_card
from spanqa.backends.onnx_backend import bench_file
from spanqa.evaluation.bench import ISA_FLAGS, cpu_model, record


def _row(config: str, backend: str, qps: float, f1: float) -> dict:
    return {"config": config, "backend": backend, "qps": qps, "f1": f1}


def test_auto_never_records_int8_without_its_re_read(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANQA_CACHE", str(tmp_path / "cache"))
    model = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    rows = {
        r["config"]: r
        for r in (
            _row("onnx-batched", "onnx", 40.0, 60.0),
            _row("onnx-int8-batched", "onnx-int8", 44.0, 59.8),
            # the fastest, within 0.5 F1 of fp32: but it gives up agreement, which is the caller's call
            _row("onnx-int8-alone-batched", "onnx-int8-alone", 50.0, 59.9),
        )
    }
    assert record({"rows": rows, "model_dir": model}, card=True) == "onnx-int8"
    kept = json.loads(bench_file(model).read_text())
    assert kept["measured"]["onnx-int8-alone"] == {"qps": 50.0, "f1": 59.9}
    assert kept["auto"] == read_card(model)["auto_backend"] == "onnx-int8"


def test_int8_alone_reads_the_same_graph_without_a_re_read(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANQA_CACHE", str(tmp_path / "cache"))
    with_re_read = Reader.load(tiny_bert_dir, backend="onnx-int8")
    alone = Reader.load(tiny_bert_dir, backend="onnx-int8-alone")
    assert with_re_read.backend.fallback is not None and alone.backend.fallback is None
    assert with_re_read.backend.fallback().lanes == 1  # one fp32 session for the re-read, never a second
    assert alone.backend.file == with_re_read.backend.file
    ids = np.array([[2, 40, 41, 3, 50, 51, 52, 3]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    for got, want in zip(alone.backend.run(feed), with_re_read.backend.run(feed)):
        np.testing.assert_array_equal(got, want)


def test_spinning_is_opt_in_bounded_and_checked(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPANQA_ONNX_SPIN_US=N makes the session's threads spin N microseconds; unset, they sleep."""
    monkeypatch.setenv("SPANQA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPANQA_ONNX_SPIN_US", raising=False)
    options = Reader.load(tiny_bert_dir, backend="onnx").backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.setenv("SPANQA_ONNX_SPIN_US", "50")
    options = Reader.load(tiny_bert_dir, backend="onnx").backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.intra_op.spin_duration_us") == "50"
    for bad in ("fast", "-5", "1.5"):
        monkeypatch.setenv("SPANQA_ONNX_SPIN_US", bad)
        with pytest.raises(InputError, match="SPANQA_ONNX_SPIN_US must be a whole number"):
            Reader.load(tiny_bert_dir, backend="onnx")


def test_every_timing_names_the_cpu_and_its_instruction_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/proc/cpuinfo").is_file():
        assert "ISA" not in cpu_model()  # no flags to report there
        return
    monkeypatch.setenv("SPANQA_HIDDEN_CPU_FLAGS", ",".join(ISA_FLAGS))  # as benchmarks/avx2_only.py does
    assert cpu_model().endswith(f"(ISA: none; lacks: {' '.join(ISA_FLAGS)})")
    monkeypatch.delenv("SPANQA_HIDDEN_CPU_FLAGS")
    named = cpu_model().partition("(ISA: ")[2]
    assert all(flag in named for flag in ISA_FLAGS)
