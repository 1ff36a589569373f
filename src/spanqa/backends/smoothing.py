"""Activation smoothing before int8 quantization (SmoothQuant, Xiao et al. 2023), on the ONNX graph.

Dynamic int8 quantization gives each matrix product's input one scale per call. Transformer activations have a
few channels with values far larger than the rest (BERT's LayerNorm outputs, and GELU outputs feeding the
feed-forward output product), so that one scale leaves the other channels only a handful of int8 levels. For a
product X·W, X·W = (X / s)·(diag(s)·W) exactly: dividing each input channel j by
s_j = max|X_j|^alpha / max|W_j|^(1-alpha) moves part of the outliers' range into the weights, which are
quantized per output channel and take it much better. The division is one fp32 Mul per distinct input; the
weights are rescaled in place. The fp32 graph computes the same logits (up to rounding) before quantization.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# Products whose second input is a weight matrix [in, out] (ONNX Runtime's fused Attention packs Q, K, V).
SMOOTHED_OPS = ("MatMul", "Attention")
DEFAULT_ALPHA = 0.5


def smooth_graph(
    fp32_file: Path, out_file: Path, calibration: dict[str, np.ndarray], alpha: float = DEFAULT_ALPHA
) -> int:
    """Write a smoothed copy of `fp32_file`; returns how many product inputs were rescaled.

    `calibration` is a batch of real model inputs (with attention_mask): activation ranges are measured on
    its real tokens only.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_file))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    users: dict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            users[name] += 1
    by_input: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        if node.op_type not in SMOOTHED_OPS or len(node.input) < 2:
            continue
        x, w = node.input[0], node.input[1]
        if x in weights or w not in weights or users[w] != 1 or len(weights[w].dims) != 2:
            continue
        by_input[x].append(node)
    if not by_input:
        return 0
    ranges = _activation_ranges(model, list(by_input), calibration)
    for x, nodes in by_input.items():
        mats = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        act = ranges.get(x)
        if act is None or any(m.shape[0] != act.shape[0] for m in mats):
            continue
        w_max = np.max([np.abs(m).max(axis=1) for m in mats], axis=0)
        s = np.power(np.maximum(act, 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        for node, mat in zip(nodes, mats):
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(mat * s[:, None], node.input[1]))
        scale_name, smoothed = f"{x}_smooth_scale", f"{x}_smoothed"
        graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), scale_name))
        graph.node.append(onnx.helper.make_node("Mul", [x, scale_name], [smoothed], name=f"{x}_smooth"))
        for node in nodes:
            node.input[0] = smoothed
    _sort_topologically(graph)
    onnx.save(model, str(out_file))
    return len(by_input)


def _activation_ranges(model: Any, names: list[str], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """max |value| per channel (last axis) of each named tensor, over the real tokens of `inputs`."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    values = session.run(names, feed)
    mask = inputs["attention_mask"].astype(bool)
    ranges = {}
    for name, value in zip(names, values):
        if value.ndim == 3 and value.shape[:2] == mask.shape:
            value = value[mask]  # padding positions are never read; their values are noise
        ranges[name] = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
    return ranges


def _sort_topologically(graph: Any) -> None:
    """ONNX requires nodes in topological order; the new Mul nodes were appended at the end."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or a missing input; cannot order it")
        done = {id(n) for n in ready}
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)
