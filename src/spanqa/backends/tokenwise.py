"""Token-wise int8 matrix products: each token's input row gets its own scale, computed per call.

ONNX Runtime's dynamic quantization gives a product's whole input one scale per call: one token with large
values (BERT's [SEP] and punctuation rows, whole windows of another batch row) coarsens every other token's
int8 grid. Here each row x of X is quantized symmetrically to int8 with s = max|x| / 127, the weights per
output column with t = max|W_:j| / 127, and X·W ≈ (s ⊗ t) ∘ (Xq·Wq), the integer product done by
`MatMulInteger` (the rows as uint8 around zero point 128, the weights int8). The scale and rounding are a
few element-wise passes over the input, small against the product's K multiply-adds per output. On CPUs
without VNNI, ONNX Runtime's uint8 x int8 kernel adds pairs of products in int16, which full 8-bit weights can
overflow: `weight_levels=63` (7-bit, as quantize.QUANT_REDUCE_RANGE) keeps every pair in range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LEVELS = 127.0  # the inputs' symmetric int8 range: -127..127


def tokenwise_int8(
    fp32_file: Path, out_file: Path, node_names: list[str], weight_levels: float = LEVELS
) -> list[str]:
    """Write `fp32_file` with the named MatMul nodes (second input a 2-D weight) made token-wise int8, the
    weights in -weight_levels..weight_levels per output column; returns the names of the nodes replaced."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_file))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    wanted, done = set(node_names), []
    kept_nodes = []
    for node in graph.node:
        w = node.input[1] if len(node.input) > 1 else ""
        if (
            node.name not in wanted
            or node.op_type != "MatMul"
            or w not in weights
            or len(weights[w].dims) != 2
        ):
            kept_nodes.append(node)
            continue
        kept_nodes.extend(_tokenwise_nodes(node, numpy_helper.to_array(weights[w]), weight_levels, graph))
        done.append(node.name)
    del graph.node[:]
    graph.node.extend(kept_nodes)
    used = {i for n in graph.node for i in n.input}
    kept_init = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_init)
    onnx.save(model, str(out_file))
    return done


def _tokenwise_nodes(node: Any, w: np.ndarray, levels: float, graph: Any) -> list[Any]:
    """The nodes replacing one `X·W` MatMul: row scales, int8 rows, integer product, rescale."""
    import onnx
    from onnx import helper, numpy_helper

    name, x, y = node.name, node.input[0], node.output[0]
    col_max = np.maximum(np.abs(w).max(axis=0), 1e-8)
    w_scale = (col_max / levels).astype(np.float32)
    wq = np.clip(np.round(w / w_scale), -levels, levels).astype(np.int8)
    k, n = w.shape
    graph.initializer.extend(
        [
            numpy_helper.from_array(wq, f"{name}_wq"),
            numpy_helper.from_array(w_scale, f"{name}_wscale"),
            numpy_helper.from_array(np.array([-1, k], dtype=np.int64), f"{name}_rows_shape"),
            numpy_helper.from_array(np.array([n], dtype=np.int64), f"{name}_n"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), f"{name}_axis1"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), f"{name}_start"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{name}_last"),
            numpy_helper.from_array(np.array(1e-8 / LEVELS, dtype=np.float32), f"{name}_tiny"),
            numpy_helper.from_array(np.array(LEVELS, dtype=np.float32), f"{name}_levels"),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), f"{name}_zero"),
        ]
    )
    t = f"{name}_tw"
    zero_vector = helper.make_tensor("zero", onnx.TensorProto.UINT8, [1], [128])

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> Any:
        return helper.make_node(op, inputs, [out], name=out, **attrs)

    return [
        # the rows as a [tokens, k] matrix (a view): one scale per row, from its largest magnitude
        node("Shape", [x], f"{t}_shape"),
        node("Reshape", [x, f"{name}_rows_shape"], f"{t}_x2"),
        node("ReduceMax", [f"{t}_x2"], f"{t}_hi", axes=[1], keepdims=0),
        node("ReduceMin", [f"{t}_x2"], f"{t}_lo", axes=[1], keepdims=0),
        node("Neg", [f"{t}_lo"], f"{t}_neglo"),
        node("Max", [f"{t}_hi", f"{t}_neglo"], f"{t}_absmax"),
        node("Div", [f"{t}_absmax", f"{name}_levels"], f"{t}_s0"),
        node("Max", [f"{t}_s0", f"{name}_tiny"], f"{t}_s"),  # all-zero rows
        # uint8 around zero point 128: ONNX Runtime's fast int8 kernels are uint8 x int8
        node("Shape", [f"{t}_s"], f"{t}_tokens"),
        node("ConstantOfShape", [f"{t}_tokens"], f"{t}_zp", value=zero_vector),
        node("QuantizeLinear", [f"{t}_x2", f"{t}_s", f"{t}_zp"], f"{t}_q", axis=0),
        node("MatMulInteger", [f"{t}_q", f"{name}_wq", f"{name}_zero"], f"{t}_i32"),
        node("Cast", [f"{t}_i32"], f"{t}_f", to=onnx.TensorProto.FLOAT),
        node("Unsqueeze", [f"{t}_s", f"{name}_axis1"], f"{t}_s2"),
        node("Mul", [f"{t}_f", f"{t}_s2"], f"{t}_rows"),
        node("Mul", [f"{t}_rows", f"{name}_wscale"], f"{t}_cols"),
        # back to the input's leading shape
        node("Slice", [f"{t}_shape", f"{name}_start", f"{name}_last"], f"{t}_lead"),
        node("Concat", [f"{t}_lead", f"{name}_n"], f"{t}_outshape", axis=0),
        helper.make_node("Reshape", [f"{t}_cols", f"{t}_outshape"], [y], name=f"{t}_out"),
    ]
