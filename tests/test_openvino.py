"""OpenVINO's int8 backend: close to fp32, the same answer whatever shares its batch, safe across threads."""

from __future__ import annotations

import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from spanqa import Reader
from spanqa.backends import openvino_backend
from spanqa.backends.load import load_backend
from spanqa.backends.model_cache import FP32_FILE
from spanqa.backends.model_dir import update_card
from spanqa.backends.onnx_backend import auto_backend
from spanqa.backends.openvino_backend import GROUP_SIZE, OpenVinoBackend, has_int8_dot_product
from spanqa.cli.main import main
from spanqa.errors import ModelError
from tiny_models import KINDS, tiny_model_dir

QUESTION = "When was the lighthouse first lit?"
CONTEXT = "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."


def _inputs(rows: int, length: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(rows, length)).astype(np.int64)
    mask = np.ones((rows, length), dtype=np.int64)
    for r in range(1, rows):  # shorter rows, padded: what a length bucket holds
        mask[r, length - 3 * r :] = 0
        ids[r, length - 3 * r :] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


# Longformer has no ONNX export (transformers' model asserts on its separators while tracing)
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "longformer"])
def test_int8_logits_stay_close_to_fp32_on_every_architecture(kind: str) -> None:
    model_dir = tiny_model_dir(kind)
    fp32 = load_backend("onnx", model_dir, threads=1)
    int8 = load_backend("openvino-int8", model_dir, threads=1)
    assert isinstance(int8, OpenVinoBackend)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    x = _inputs(3, 40, vocab)
    feed = {k: x[k] for k in fp32.input_names}
    want, got = fp32.run(feed), int8.run(feed)
    real = x["attention_mask"].astype(bool)
    for w, g in zip(want, got):
        assert g.shape == w.shape and g.dtype == np.float32
        scale = np.abs(w[real]).max()
        error = np.abs(g[real] - w[real]).max() / scale
        assert error < 0.05, f"{kind}: int8 logits differ from fp32 by {error:.1%} of their range"
        assert error > 0, "identical to fp32: the weights were not made int8"


def test_a_window_gets_the_same_logits_alone_and_in_any_batch(tiny_bert_dir: Path) -> None:
    """Activation scales are per token group: unlike per-tensor int8, a neighbour moves the logits by float
    rounding at most."""
    backend = load_backend("openvino-int8", tiny_bert_dir, threads=2)
    x = _inputs(5, 48, 100, seed=3)
    start, end = backend.run(x)  # 5 rows: two lanes of 3 and 2
    for r in range(5):
        alone = {k: v[r : r + 1] for k, v in x.items()}
        s, e = backend.run(alone)
        np.testing.assert_allclose(s[0], start[r], rtol=0, atol=1e-5)
        np.testing.assert_allclose(e[0], end[r], rtol=0, atol=1e-5)


def test_a_reader_shared_by_threads_answers_as_it_does_alone(tiny_bert_dir: Path) -> None:
    reader = Reader.load(tiny_bert_dir, backend="openvino-int8", threads=2)
    contexts = [CONTEXT, CONTEXT + " It is 31 metres tall.", "Construction began in 1846. " + CONTEXT]
    items = [(QUESTION, c) for c in contexts] * 4
    alone = [reader.answer(q, c) for q, c in items]
    with ThreadPoolExecutor(4) as pool:
        shared = list(pool.map(lambda item: reader.answer_batch([item, item], batch_size=2)[0], items))
    for a, b in zip(alone, shared):
        assert [(x.start, x.end) for x in a.answers] == [(x.start, x.end) for x in b.answers]
        assert a.answerable == pytest.approx(b.answerable, abs=1e-5)


def test_the_shipped_model_answers_real_text(default_model_dir: Path) -> None:
    context = Path(__file__).resolve().parents[1].joinpath("samples", "lighthouse.txt").read_text()
    reader = Reader.load(default_model_dir, backend="openvino-int8")
    pred = reader.answer(QUESTION, context)
    assert pred.best is not None and pred.best.text == "12 March 1849"
    assert context[pred.best.start : pred.best.end] == "12 March 1849"


def test_cpu_flags_decide_where_auto_may_use_openvino() -> None:
    assert has_int8_dot_product("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n")
    assert has_int8_dot_product("flags\t\t: fpu avx2 avx_vnni\n")
    assert not has_int8_dot_product("flags : fpu sse2 avx2 fma\n")
    assert not has_int8_dot_product("model name : some arm core\n")
    assert GROUP_SIZE == 64


def test_auto_uses_openvino_only_where_it_was_measured(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, copy)
    update_card(copy, auto_backend="openvino-int8")
    assert auto_backend(copy) == "openvino-int8"
    monkeypatch.setattr(openvino_backend, "has_int8_dot_product", lambda: True)
    assert Reader.load(copy, backend="auto").backend.name == "openvino-int8"
    monkeypatch.setattr(openvino_backend, "has_int8_dot_product", lambda: False)
    assert Reader.load(copy, backend="auto").backend.name == "onnx-int8"
    # flags hidden the way benchmarks/avx2_only.py hides them: this machine's /proc/cpuinfo, read for real
    monkeypatch.undo()
    monkeypatch.setenv("SPANQA_HIDDEN_CPU_FLAGS", "avx512_vnni,avx_vnni")
    assert not openvino_backend.has_int8_dot_product()
    assert Reader.load(copy, backend="auto").backend.name == "onnx-int8"


def test_missing_openvino_is_a_clear_model_error(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(ModelError, match="openvino"):
        Reader.load(tiny_bert_dir, backend="openvino-int8")
    args = ["ask", "--model", str(tiny_bert_dir), "--backend", "openvino-int8", "--context", CONTEXT, "Who?"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "openvino" in err and "Traceback" not in err
    copy = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, copy)
    update_card(copy, auto_backend="openvino-int8")
    # auto falls back to ONNX Runtime instead of failing
    assert Reader.load(copy, backend="auto").backend.name == "onnx-int8"


def test_an_exported_directory_loads_and_one_without_the_fp32_graph_is_refused(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    assert main(["export", "--model", str(tiny_bert_dir), "--int8", "--out", str(out)]) == 0
    pred = Reader.load(out, backend="openvino-int8").answer(QUESTION, CONTEXT)
    assert all(CONTEXT[a.start : a.end] == a.text for a in pred.answers)
    (out / FP32_FILE).unlink()  # the int8 graph alone: OpenVINO makes its own int8 from fp32
    with pytest.raises(ModelError, match="fp32 graph"):
        Reader.load(out, backend="openvino-int8")


def test_ray_workers_get_the_fp32_graph_and_read_in_batches(tiny_bert_dir: Path) -> None:
    from spanqa.backends.model_cache import INT8_FILE
    from spanqa.cluster.ray_predict import model_files
    from spanqa.cluster.rows import ReadOptions
    from spanqa.reading.bucketing import BATCH_SIZE

    files = model_files(tiny_bert_dir, "openvino-int8")
    assert FP32_FILE in files and INT8_FILE not in files and "model.safetensors" not in files
    # its answers depend on the batch only through float rounding; onnx-int8 reads one window at a time
    assert ReadOptions().for_backend("openvino-int8")["batch_size"] == BATCH_SIZE
    assert ReadOptions().for_backend("onnx-int8")["batch_size"] == 1
