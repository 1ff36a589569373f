"""Layer norms as plain element-wise operators instead of ONNX Runtime's fused kernels.

ONNX Runtime's CPU kernels for `SkipLayerNormalization` and `LayerNormalization` (1.32) work row by row at
about 2.3 µs per 384-wide row: 0.52 ms for one 223-token window, 12 of them per MiniLM-L6 question, 17% of
the int8 graph's time. The same arithmetic as Add, ReduceMean, Sub, Mul, Sqrt and Div, each a vectorized
kernel over the whole tensor, takes 0.13 ms (`benchmarks/levers.py` variants `fp32-fusedln`, `int8-fusedln`
for the old form; docs/onnx.md). The results agree to float rounding (~2e-6).

ONNX Runtime's own graph optimizer would fuse the plain form back (`LayerNormFusion`, `SkipLayerNormFusion`
at ORT_ENABLE_EXTENDED and above), so sessions are made with those two optimizers disabled
(`UNFUSED_OPTIMIZERS`, used by spanqa.backends.onnx_backend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FUSED_OPS = ("SkipLayerNormalization", "LayerNormalization")
# What a session must not run on a graph written here, or it would undo it.
UNFUSED_OPTIMIZERS = ("LayerNormFusion", "SkipLayerNormFusion", "SimplifiedLayerNormFusion")


def unfuse_layer_norms(source: Path, out: Path) -> int:
    """Write `source` to `out` with every (Skip)LayerNormalization over the last axis written out as plain
    operators; returns how many were replaced (0: `out` is a copy)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    nodes, added, count = [], [], 0
    for node in graph.node:
        plain = _plain_form(node, helper, numpy_helper, added)
        if plain is None:
            nodes.append(node)
        else:
            nodes.extend(plain)
            count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    onnx.save(model, str(out))
    return count


def _plain_form(node, helper, numpy_helper, added: list) -> list | None:
    if node.domain not in ("", "ai.onnx", "com.microsoft") or node.op_type not in FUSED_OPS:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "LayerNormalization" and attrs.get("axis", -1) != -1:
        return None
    used_outputs = [o for o in node.output[1:] if o]
    if used_outputs:  # mean / inverse std / the skip sum asked for: keep the fused kernel
        return None
    name, out = node.name or node.output[0], node.output[0]
    eps = numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), f"{name}_eps")
    added.append(eps)

    made: list = []

    def step(op: str, inputs: list[str], suffix: str, result: str | None = None, **kw) -> str:
        result = result or f"{name}_{suffix}"
        made.append(helper.make_node(op, inputs, [result], name=f"{name}_{suffix}", **kw))
        return result

    if node.op_type == "SkipLayerNormalization":
        x, skip, gamma, beta, bias = (list(node.input) + [""] * 5)[:5]
        total = step("Add", [x, skip], "sum")
        if bias:
            total = step("Add", [total, bias], "biased")
    else:
        total, gamma, beta = (list(node.input) + [""] * 3)[:3]
    # ReduceMean takes `axes` as an attribute up to opset 17 (spanqa exports at 17)
    mean = step("ReduceMean", [total], "mean", axes=[-1], keepdims=1)
    centred = step("Sub", [total, mean], "centred")
    var = step("ReduceMean", [step("Mul", [centred, centred], "square")], "var", axes=[-1], keepdims=1)
    std = step("Sqrt", [step("Add", [var, eps.name], "var_eps")], "std")
    normed = step("Div", [centred, std], "normed")
    if beta:
        step("Add", [step("Mul", [normed, gamma], "scaled"), beta], "out", result=out)
    else:
        step("Mul", [normed, gamma], "out", result=out)
    return made
