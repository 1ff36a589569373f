"""Feed-forward output products in int8 with their outlier input channels kept fp32 (LLM.int8()-style).

The input of each feed-forward output product (a GELU's output, 4x hidden channels) has a few channels far
larger than the rest; one dynamic int8 scale per call then leaves the others a handful of levels, which is why
the recipe kept these products fp32 (a third of the encoder's multiply-adds). Here X·W is computed as

    (X * m)·W_rest  [int8]   +   X[:, :, outliers]·W[outliers, :]  [fp32, k channels]

where m is the smoothing Mul's per-channel scale with the outlier channels zeroed (so they no longer set the
int8 scale) and W_rest is W with the outlier rows zeroed. The fp32 graph computes the same function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INT8_SUFFIX = "_int8_part"
OUTLIER_SUFFIX = "_outlier_part"


def split_outlier_channels(
    file: Path, out: Path, products: list[str], calibration: dict[str, np.ndarray], k: int
) -> list[str]:
    """Rewrite each named MatMul as an int8-able part plus a k-channel fp32 part; returns the fp32 parts."""
    import onnx
    from onnx import helper, numpy_helper

    from spanqa.backends.smoothing import _activation_ranges, _sort_topologically

    model = onnx.load(str(file))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    made_by = {o: n for n in graph.node for o in n.output}
    nodes = [n for n in graph.node if n.name in products and n.input[1] in weights]
    ranges = _activation_ranges(model, [n.input[0] for n in nodes], calibration)
    keep_fp32 = []
    for node in nodes:
        x_in, w_name = node.input[0], node.input[1]
        w = numpy_helper.to_array(weights[w_name])
        top = np.sort(np.argsort(-ranges[x_in])[:k]).astype(np.int64)
        smooth = made_by.get(x_in)
        if smooth is not None and smooth.op_type == "Mul" and smooth.input[1] in weights:
            raw = smooth.input[0]  # the smoothed input X/s: its outliers, in raw units, need W's rows / s
            scale = numpy_helper.to_array(weights[smooth.input[1]]).astype(np.float32)
            w_raw = w[top] * scale[top, None]
            masked = scale.copy()
            masked[top] = 0.0
            weights[smooth.input[1]].CopyFrom(numpy_helper.from_array(masked, smooth.input[1]))
            int8_input = x_in
        else:
            raw, w_raw = x_in, w[top]
            mask = np.ones(w.shape[0], dtype=np.float32)
            mask[top] = 0.0
            graph.initializer.append(numpy_helper.from_array(mask, f"{node.name}_mask"))
            int8_input = f"{node.name}_masked"
            graph.node.append(helper.make_node("Mul", [x_in, f"{node.name}_mask"], [int8_input]))
        rest = w.copy()
        rest[top] = 0.0
        weights[w_name].CopyFrom(numpy_helper.from_array(rest, w_name))
        for name, value in ((f"{node.name}_idx", top), (f"{node.name}_w_outliers", w_raw.astype(np.float32))):
            graph.initializer.append(numpy_helper.from_array(value, name))
        y = node.output[0]
        picked, y_int8, y_fp32 = f"{node.name}_picked", f"{node.name}_y_int8", f"{node.name}_y_fp32"
        graph.node.extend(
            [
                helper.make_node("MatMul", [int8_input, w_name], [y_int8], name=node.name + INT8_SUFFIX),
                helper.make_node("Gather", [raw, f"{node.name}_idx"], [picked], axis=-1),
                helper.make_node(
                    "MatMul", [picked, f"{node.name}_w_outliers"], [y_fp32], name=node.name + OUTLIER_SUFFIX
                ),
                helper.make_node("Add", [y_int8, y_fp32], [y]),
            ]
        )
        graph.node.remove(node)
        keep_fp32.append(node.name + OUTLIER_SUFFIX)
    _sort_topologically(graph)
    onnx.save(model, str(out))
    return keep_fp32
