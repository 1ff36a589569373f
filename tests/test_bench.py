"""What `spanqa bench --record` keeps for backend="auto": what each backend gives its users."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spanqa.backends.model_dir import read_card
from spanqa.backends.onnx_backend import bench_file
from spanqa.evaluation.bench import record


def test_record_keeps_what_users_get_not_int8_without_its_re_read(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANQA_CACHE", str(tmp_path / "cache"))
    model = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    rows = {
        "onnx-batched": {"config": "onnx-batched", "backend": "onnx", "qps": 40.0, "f1": 60.0},
        "onnx-int8-batched": {"config": "onnx-int8-batched", "backend": "onnx-int8", "qps": 44.0, "f1": 59.8},
        # faster, but F1 too far below fp32 for auto; and no user gets int8 without the re-read
        "onnx-int8-nofallback-batched": {
            "config": "onnx-int8-nofallback-batched",
            "backend": "onnx-int8",
            "qps": 50.0,
            "f1": 59.0,
        },
    }
    assert record({"rows": rows, "model_dir": model}, card=True) == "onnx-int8"
    kept = json.loads(bench_file(model).read_text())
    assert kept["measured"]["onnx-int8"] == {"qps": 44.0, "f1": 59.8}
    assert read_card(model)["auto_backend"] == "onnx-int8"
