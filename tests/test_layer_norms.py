"""Layer norms as plain operators (spanqa.backends.layernorm): the same function, and they stay plain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from spanqa.backends.export import ensure_cached_export
from spanqa.backends.layernorm import UNFUSED_OPTIMIZERS, unfuse_layer_norms
from spanqa.backends.model_cache import read_report

HIDDEN, ROWS = 48, 9


def _graph(tmp_path: Path, node: onnx.NodeProto, extra_outputs: tuple[str, ...] = ()) -> Path:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.random(HIDDEN) + 0.5).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal(HIDDEN).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal(HIDDEN).astype(np.float32), "bias"),
    ]
    shape = [2, ROWS, HIDDEN]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y", *extra_outputs)]
    graph = helper.make_graph(
        [node],
        "ln",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "skip")],
        outputs,
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    path = tmp_path / f"{node.op_type}.onnx"
    onnx.save(model, str(path))
    return path


def _run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], disabled_optimizers=list(UNFUSED_OPTIMIZERS)
    )
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in names})


def _feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, ROWS, HIDDEN)).astype(np.float32) * 5 + 3  # off-centre, wide rows
    x[0, 0, 7] = 400.0  # one loud channel, as transformer activations have
    skip = rng.standard_normal((2, ROWS, HIDDEN)).astype(np.float32)
    x[1, 1], skip[1, 1] = x[1, 1] * 0.002 - x[1, 1].mean() * 0.002, 0.0  # a quiet row: epsilon counts
    return {"x": x, "skip": skip}


@pytest.mark.parametrize(
    "node",
    [
        helper.make_node(
            "SkipLayerNormalization",
            ["x", "skip", "gamma", "beta", "bias"],
            ["y"],
            domain="com.microsoft",
            epsilon=1e-12,
        ),
        helper.make_node(
            "SkipLayerNormalization", ["x", "skip", "gamma"], ["y"], domain="com.microsoft", epsilon=1e-5
        ),
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5),
    ],
    ids=["skip-bias-beta", "skip-gamma-only", "layernorm"],
)
def test_plain_layer_norms_compute_the_fused_function(tmp_path: Path, node: onnx.NodeProto) -> None:
    fused = _graph(tmp_path, node)
    plain = tmp_path / "plain.onnx"
    assert unfuse_layer_norms(fused, plain) == 1
    ops = {n.op_type for n in onnx.load(str(plain)).graph.node}
    assert not ops & {"SkipLayerNormalization", "LayerNormalization"}
    want, got = _run(fused, _feed())[0], _run(plain, _feed())[0]
    assert np.abs(want).max() > 1.0  # gamma and beta reached the output
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


def test_a_norm_whose_extra_outputs_are_used_stays_fused(tmp_path: Path) -> None:
    node = helper.make_node(
        "SkipLayerNormalization",
        ["x", "skip", "gamma", "beta"],
        ["y", "", "", "sum"],
        domain="com.microsoft",
    )
    plain = tmp_path / "plain.onnx"
    assert unfuse_layer_norms(_graph(tmp_path, node, ("sum",)), plain) == 0
    assert [n.op_type for n in onnx.load(str(plain)).graph.node] == ["SkipLayerNormalization"]


def test_exports_have_plain_layer_norms_that_sessions_keep(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANQA_CACHE", str(tmp_path / "cache"))
    file = ensure_cached_export(tiny_bert_dir, int8=True)
    report = read_report(file.parent)
    assert report["fp32"]["plain_layer_norms"] == 2 * 2  # two per layer; the embeddings one stays fused
    assert report["fp32"]["max_logit_diff"] < 1e-3
    for name in ("model.onnx", "model-int8.onnx"):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(tmp_path / f"optimized-{name}")
        ort.InferenceSession(
            str(file.parent / name),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(UNFUSED_OPTIMIZERS),
        )
        ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
        # what ONNX Runtime runs, after its own optimizations: the layer norms were not fused back
        assert not {"SkipLayerNormalization", "LayerNormalization"} & set(ops), name
        assert ops.count("ReduceMean") == 2 * 2 * 2, name
