"""ONNX export and inference on a tiny model: dynamic shapes, the cache, int8, agreement with PyTorch."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

from spanqa import ModelError, Reader
from spanqa.backends.export import ensure_cached_export
from spanqa.backends.load import load_backend
from spanqa.backends.model_cache import (
    FP32_FILE,
    INT8_FILE,
    cached_export_dir,
    model_fingerprint,
    read_report,
)
from spanqa.backends.onnx_backend import auto_backend, choose_auto
from spanqa.backends.quantize import ffn_output_matmuls
from spanqa.backends.torch_backend import TorchBackend
from spanqa.cli.main import main
from spanqa.reading.bucketing import length_batches, padding_fraction

CONTEXT = (
    "The Old Point lighthouse stands on a granite headland at the mouth of the harbour. "
    "Construction began in 1846 under the engineer Margaret Hale. "
    "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."
)
QUESTIONS = ["When was it lit?", "Who built the tower?", "What did the lamp burn?", "How tall is it?"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("spanqa-cache")
        mp.setenv("SPANQA_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy: some tests change its files."""
    return Path(shutil.copytree(tiny_bert_dir, tmp_path_factory.mktemp("m") / "tiny"))


@pytest.fixture(scope="module")
def int8_file(model_dir: Path, cache: Path) -> Path:
    return ensure_cached_export(model_dir, int8=True)


def _inputs(batch: int, length: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[-1, length // 2 :] = 0  # the last row is padded
    types = np.zeros_like(ids)
    types[:, length // 3 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def test_export_has_dynamic_axes_and_matches_torch(model_dir: Path, int8_file: Path) -> None:
    onnx = load_backend("onnx", model_dir)
    torch = TorchBackend(model_dir)
    assert set(onnx.input_names) <= {"input_ids", "attention_mask", "token_type_ids"}
    for batch, length in ((1, 7), (3, 40), (5, 128)):
        x = _inputs(batch, length, 300, seed=batch)
        got, want = onnx.run(x), torch.run(x)
        real = x["attention_mask"].astype(bool)
        for g, w in zip(got, want):
            assert g.shape == (batch, length)
            np.testing.assert_allclose(g[real], w[real], atol=1e-4)
    report = read_report(int8_file.parent)
    assert report["fp32"]["max_logit_diff"] < 1e-3
    assert report["fingerprint"] == model_fingerprint(model_dir)


def test_onnx_predictions_equal_torch_spans(model_dir: Path, int8_file: Path) -> None:
    items = [(q, CONTEXT) for q in QUESTIONS]
    torch_preds = Reader.load(model_dir).answer_batch(items, top_k=3)
    onnx_preds = Reader.load(model_dir, backend="onnx").answer_batch(items, top_k=3)
    for t, o in zip(torch_preds, onnx_preds):
        assert [(a.start, a.end) for a in o.answers] == [(a.start, a.end) for a in t.answers]
        assert o.no_answer == t.no_answer
        assert o.null_score_diff == pytest.approx(t.null_score_diff, abs=1e-3)


def test_int8_runs_and_answers_with_exact_offsets(model_dir: Path, int8_file: Path) -> None:
    reader = Reader.load(model_dir, backend="onnx-int8")
    assert reader.backend.name == "onnx-int8"
    assert Path(reader.backend.file) == int8_file
    start, end = reader.backend.run(_inputs(2, 33, 300, seed=7))
    assert start.shape == end.shape == (2, 33) and np.isfinite(start).all() and np.isfinite(end).all()
    for pred in reader.answer_batch([(q, CONTEXT) for q in QUESTIONS], top_k=2):
        assert pred.answers
        for a in pred.answers:
            assert CONTEXT[a.start : a.end] == a.text
    report = read_report(int8_file.parent)["int8"]
    assert 0 <= report["best_token_agreement"] <= 1 and np.isfinite(report["max_logit_diff"])
    ops = [n.op_type for n in onnx.load(str(int8_file), load_external_data=False).graph.node]
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    # the feed-forward outputs (one per layer) are token-wise int8, none is left fp32
    assert report["tokenwise_products"] == 2 and ffn_output_matmuls(int8_file) == []


def test_cache_is_reused(model_dir: Path, int8_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import spanqa.backends.export

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this model")

    monkeypatch.setattr(spanqa.backends.export, "export_onnx", no_export)
    assert ensure_cached_export(model_dir, int8=True) == int8_file
    assert Reader.load(model_dir, backend="onnx").backend.file == int8_file.parent / FP32_FILE


def test_changed_model_is_exported_again(tiny_bert_dir: Path, tmp_path: Path, cache: Path) -> None:
    from safetensors.numpy import load_file, save_file

    changed = Path(shutil.copytree(tiny_bert_dir, tmp_path / "changed"))
    weights = load_file(changed / "model.safetensors")
    name = next(k for k in weights if k.startswith("qa_outputs") and k.endswith("weight"))
    weights[name] = weights[name] * 2.0
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})
    assert model_fingerprint(changed) != model_fingerprint(tiny_bert_dir)
    file = ensure_cached_export(changed, int8=False)
    assert file.parent == cached_export_dir(changed) != cached_export_dir(tiny_bert_dir)
    x = _inputs(2, 20, 300, seed=3)
    real = x["attention_mask"].astype(bool)
    np.testing.assert_allclose(
        load_backend("onnx", changed).run(x)[0][real], TorchBackend(changed).run(x)[0][real], atol=1e-4
    )


def test_concurrent_first_uses_export_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import spanqa.backends.export

    monkeypatch.setenv("SPANQA_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    calls = []

    def fake_export(model_dir, out, *, int8, fingerprint=None):
        calls.append(out)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        out.mkdir(parents=True, exist_ok=True)
        (out / FP32_FILE).write_bytes(b"onnx")

    monkeypatch.setattr(spanqa.backends.export, "export_onnx", fake_export)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_cached_export(model, False))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and results[0].read_bytes() == b"onnx"


def test_interrupted_export_leaves_no_partial_file(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spanqa.backends.export

    monkeypatch.setenv("SPANQA_CACHE", str(tmp_path / "cache"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spanqa.backends.export, "_quantize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_cached_export(tiny_bert_dir, int8=True)
    out = cached_export_dir(tiny_bert_dir)
    assert not (out / INT8_FILE).exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # temporary files removed
    assert (out / FP32_FILE).is_file()  # the finished fp32 step is kept and still loads
    assert load_backend("onnx", tiny_bert_dir).run(_inputs(1, 9, 300, seed=1))[0].shape == (1, 9)


def test_export_command_makes_a_model_dir_without_weights(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "exported"
    assert main(["export", "--model", str(model_dir), "--out", str(out)]) == 0
    assert "max logit difference" in capsys.readouterr().out
    assert (out / FP32_FILE).is_file() and (out / "tokenizer.json").is_file()
    pred = Reader.load(out, backend="onnx").answer(QUESTIONS[0], CONTEXT)
    assert CONTEXT[pred.answers[0].start : pred.answers[0].end] == pred.answers[0].text
    with pytest.raises(ModelError, match="--int8"):
        Reader.load(out, backend="onnx-int8")
    assert main(["ask", "--model", str(out), "--backend", "torch", "--context", CONTEXT, "Who?"]) == 2
    assert "error" in capsys.readouterr().err


def test_missing_onnxruntime_is_a_clear_model_error(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ModelError, match="onnxruntime"):
        Reader.load(model_dir, backend="onnx-int8")
    assert Reader.load(model_dir, backend="auto").backend.name == "torch"  # auto falls back
    assert main(["ask", "--model", str(model_dir), "--backend", "onnx", "--context", CONTEXT, "Who?"]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime" in err and "Traceback" not in err


def test_auto_follows_measurements_then_card_then_default(
    model_dir: Path, cache: Path, tmp_path: Path
) -> None:
    from spanqa.backends.model_cache import write_json_atomic
    from spanqa.backends.model_dir import update_card
    from spanqa.backends.onnx_backend import DEFAULT_AUTO, bench_file

    copy = Path(shutil.copytree(model_dir, tmp_path / "auto"))
    assert auto_backend(copy) == DEFAULT_AUTO
    update_card(copy, auto_backend="onnx-int8")
    assert auto_backend(copy) == "onnx-int8"
    file = bench_file(copy)
    file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(file, {"auto": "torch"})
    assert auto_backend(copy) == "torch"
    assert Reader.load(copy, backend="auto").backend.name == "torch"


def test_choose_auto_takes_the_fastest_within_half_a_point() -> None:
    fast_but_worse = {"torch": {"qps": 10, "f1": 70.0}, "onnx": {"qps": 20, "f1": 70.0}}
    assert choose_auto({**fast_but_worse, "onnx-int8": {"qps": 60, "f1": 69.4}}) == "onnx"
    assert choose_auto({**fast_but_worse, "onnx-int8": {"qps": 60, "f1": 69.6}}) == "onnx-int8"
    assert choose_auto({"onnx-int8": {"qps": 60, "f1": 69.6}}) is None  # no fp32 to compare with


@pytest.mark.parametrize("seed", range(5))
def test_length_batches_cap_padding_and_cover_every_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 385, size=int(rng.integers(1, 400)))
    batches = length_batches(lengths, batch_size=16)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for b, following in zip(batches, [*batches[1:], None]):
        assert len(b) <= 16
        assert len(b) * lengths[b].max() - lengths[b].sum() <= 0.1 * len(b) * lengths[b].max()
        if following is not None and len(b) < 16:  # cut early only when the next window would break the cap
            grown = np.append(b, following[0])
            assert (
                len(grown) * lengths[grown].max() - lengths[grown].sum()
                > 0.1 * len(grown) * lengths[grown].max()
            )
    assert padding_fraction(lengths, batches) <= 0.1
    assert padding_fraction(lengths, [np.arange(len(lengths))]) >= padding_fraction(lengths, batches)


def test_smoothing_keeps_the_fp32_logits_and_tames_outlier_channels(
    model_dir: Path, int8_file: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort
    from onnx import numpy_helper

    from spanqa.backends.smoothing import _activation_ranges, smooth_graph

    fp32 = int8_file.parent / FP32_FILE
    calibration = _inputs(3, 24, 300, seed=11)
    smoothed = tmp_path / "smoothed.onnx"
    assert smooth_graph(fp32, smoothed, calibration) > 0
    graph = onnx.load(str(smoothed)).graph
    scales = [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("_smooth_scale")]
    assert scales and all(np.isfinite(s).all() and (s > 0).all() for s in scales)
    assert any(not np.allclose(s, 1.0) for s in scales)
    # the products' inputs are flatter after smoothing: the largest channel is nearer the typical one
    originals = [t.name.removesuffix("_smooth_scale") for t in graph.initializer if t.name.endswith("_scale")]
    before = _activation_ranges(onnx.load(str(fp32)), originals, calibration)
    after = _activation_ranges(onnx.load(str(smoothed)), [f"{n}_smoothed" for n in originals], calibration)
    spread = [r.max() / np.median(r) for r in before.values()]
    spread_after = [r.max() / np.median(r) for r in after.values()]
    assert np.mean(spread_after) < np.mean(spread)

    def logits(file: Path, x: dict) -> list[np.ndarray]:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        return session.run(None, {i.name: x[i.name] for i in session.get_inputs()})

    x = _inputs(2, 31, 300, seed=5)  # not the calibration batch
    real = x["attention_mask"].astype(bool)
    for got, want in zip(logits(smoothed, x), logits(fp32, x)):
        np.testing.assert_allclose(got[real], want[real], atol=1e-4)


def test_lanes_split_a_batch_and_give_the_same_logits(model_dir: Path, int8_file: Path) -> None:
    from spanqa.backends.onnx_backend import OnnxBackend

    file = int8_file.parent / FP32_FILE
    one = OnnxBackend(file, "onnx", threads=2, lanes=1)
    lanes = OnnxBackend(file, "onnx", threads=2, lanes=2)
    lanes.run(_inputs(2, 9, 300, seed=0))  # makes the lanes' session
    real_run, rows_per_run = lanes._lane_session.run, []

    def counting_run(outputs, feed):  # the rows each lane hands ONNX Runtime
        rows_per_run.append(len(feed["input_ids"]))
        return real_run(outputs, feed)

    lanes._lane_session = type("Lane", (), {"run": staticmethod(counting_run)})()
    for batch in (1, 5):
        x = _inputs(batch, 33, 300, seed=10 + batch)
        for got, want in zip(lanes.run(x), one.run(x)):
            assert got.shape == (batch, 33)
            np.testing.assert_allclose(got, want, atol=1e-5)
    assert sorted(rows_per_run) == [2, 3]  # one window ran on all cores; five ran as two lanes


@pytest.mark.parametrize("smoothed", [False, True])
def test_outlier_split_keeps_the_fp32_logits(int8_file: Path, tmp_path: Path, smoothed: bool) -> None:
    import onnxruntime as ort

    from spanqa.backends.outliers import OUTLIER_SUFFIX, split_outlier_channels
    from spanqa.backends.smoothing import smooth_graph

    fp32 = int8_file.parent / FP32_FILE
    calibration = _inputs(3, 24, 300, seed=11)
    source = fp32
    if smoothed:
        source = tmp_path / "smoothed.onnx"
        smooth_graph(fp32, source, calibration)
    products = ffn_output_matmuls(source)
    assert products
    split = tmp_path / "split.onnx"
    kept = split_outlier_channels(source, split, products, calibration, k=3)
    assert sorted(kept) == sorted(p + OUTLIER_SUFFIX for p in products)
    names = {n.name for n in onnx.load(str(split)).graph.node}
    assert not set(products) & names  # each product was replaced by its two parts
    x = _inputs(2, 31, 300, seed=5)
    real = x["attention_mask"].astype(bool)
    runs = []
    for file in (split, fp32):
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        runs.append(session.run(None, {i.name: x[i.name] for i in session.get_inputs()}))
    for got, want in zip(*runs):
        np.testing.assert_allclose(got[real], want[real], atol=1e-4)


def _matmul_model(w: np.ndarray, file: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, w.shape[1]])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="product")
    graph = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(file))


@pytest.mark.parametrize("weight_levels", [127.0, 63.0])
def test_tokenwise_int8_gives_each_token_its_own_scale(tmp_path: Path, weight_levels: float) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from spanqa.backends.tokenwise import tokenwise_int8

    rng = np.random.default_rng(3)
    w = rng.normal(size=(64, 16)).astype(np.float32)
    x = rng.normal(size=(2, 9, 64)).astype(np.float32)
    x[0, 4] *= 300.0  # one loud token, as [SEP] rows are
    _matmul_model(w, tmp_path / "fp32.onnx")
    done = tokenwise_int8(tmp_path / "fp32.onnx", tmp_path / "tw.onnx", ["product"], weight_levels)
    assert done == ["product"]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "tw.onnx")).graph.node]
    assert "MatMulInteger" in ops and "MatMul" not in ops
    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "dyn.onnx"), weight_type=QuantType.QInt8)

    def run(name: str, inputs: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": inputs})[0]

    want = x @ w
    tw, per_call = run("tw.onnx", x), run("dyn.onnx", x)
    quiet = np.ones(x.shape[:2], dtype=bool)
    quiet[0, 4] = False
    tw_err = np.abs(tw - want)[quiet].max() / np.abs(want[quiet]).max()
    per_call_err = np.abs(per_call - want)[quiet].max() / np.abs(want[quiet]).max()
    assert tw_err < 0.03  # 8-bit rows and columns: about 1% of the output's range
    assert tw_err * 10 < per_call_err  # one scale per call leaves the quiet tokens a few levels
    np.testing.assert_allclose(tw[0, 4], want[0, 4], rtol=0, atol=0.03 * np.abs(want[0, 4]).max())
    zeros = np.zeros((1, 3, 64), dtype=np.float32)  # an all-zero row: no division by zero
    np.testing.assert_array_equal(run("tw.onnx", zeros), np.zeros((1, 3, 16), dtype=np.float32))


def test_int8_has_an_fp32_fallback_made_on_first_use(model_dir: Path, int8_file: Path) -> None:
    int8 = Reader.load(model_dir, backend="onnx-int8").backend
    assert Reader.load(model_dir, backend="onnx").backend.fallback is None
    assert int8.fallback._made is None  # nothing loaded until a question needs it
    fp32 = int8.fallback()
    assert fp32.name == "onnx" and fp32.fallback is None and int8.fallback() is fp32
    x = _inputs(2, 17, 300, seed=4)
    want = Reader.load(model_dir, backend="onnx").backend.run(x)
    for got, expected in zip(fp32.run(x), want):
        np.testing.assert_allclose(got, expected, atol=1e-5)
