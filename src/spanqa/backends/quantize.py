"""The int8 recipe: which products are quantized, how, and the smoothing that makes it accurate.

Dynamic quantization (onnxruntime.quantization.quantize_dynamic): weights int8 ahead of time, each product's
input quantized per call. The recipe below was chosen by answer agreement with the fp32 model (the issue asks
for >= 97%); docs/onnx.md has the measurements. Bump spanqa.backends.model_cache.EXPORT_RECIPE when changing
anything here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# The matrix products only: embeddings (Gather) stay fp32, they cost no compute and quantizing them costs
# accuracy.
INT8_OPS = ("MatMul", "Attention")
# Per-channel 7-bit weights: on an AVX2 CPU without VNNI, int8 products can saturate, and per-tensor scales
# lose the small rows. Answer agreement with fp32 (300 dev-rest questions, the first trained model):
# per-tensor 80.0%, per-channel 88.0%, per-channel + reduce_range 89.7%.
QUANT_PER_CHANNEL = True
QUANT_REDUCE_RANGE = True
# The GELU output feeding each feed-forward output product has outliers that one dynamic scale per tensor
# flattens; keeping those products fp32 raised agreement from 89.7% to 94.3% on the same questions.
KEEP_FFN_OUTPUT_FP32 = True
# None: those products entirely fp32. A number k: int8 with their k largest input channels fp32
# (spanqa.backends.outliers).
FFN_OUTLIER_CHANNELS: int | None = None
# SmoothQuant-style scaling of each product's input channels (spanqa.backends.smoothing), calibrated on the
# export's verification batch. Agreement with fp32 on 600 dev-rest-tune questions, shipped model, feed-forward
# outputs fp32: no smoothing 94.2%, alpha 0.5 97.0%; with the feed-forward outputs int8 too: alpha 0.5 92.0%,
# alpha 0.8 88.7%.
SMOOTH_ALPHA: float | None = 0.5
# Token-wise int8 (spanqa.backends.tokenwise: one scale per input row, not per call) for "ffn-output" (the
# feed-forward output products, fp32 otherwise), "all" products but fused attention, or None. On v2, 600
# dev-rest-tune questions, plain layer norms: "ffn-output" agrees with fp32 on 94.7% of answers alone (None:
# 95.8%), and on 98.0% once the reader re-reads in fp32 the questions near either decision (no answer or
# which span; reading.steps), for more speed than None with its re-read (docs/onnx.md).
TOKENWISE: str | None = "ffn-output"
# With TOKENWISE "ffn-output": only the feed-forward outputs of these layers (0-based; None: all).
TOKENWISE_LAYERS: tuple[int, ...] | None = None


def quantize_int8(fp32: Path, out: Path, calibration: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write the int8 model for `fp32` to `out`; returns the recipe's settings for the export report."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, smoothed_inputs = fp32, 0
    if SMOOTH_ALPHA is not None:
        from spanqa.backends.smoothing import smooth_graph

        source = out.with_name(out.stem + "-smoothed.onnx")
        smoothed_inputs = smooth_graph(fp32, source, calibration, SMOOTH_ALPHA)
        if not smoothed_inputs:
            source = fp32
    tokenwise: list[str] = []
    if TOKENWISE is not None:
        from spanqa.backends.tokenwise import tokenwise_int8

        if TOKENWISE == "all":
            graph = onnx.load(str(source), load_external_data=False).graph
            chosen = [n.name for n in graph.node if n.op_type == "MatMul"]
        else:
            chosen = [n for n in _ffn_outputs(source) if _in_layers(n, TOKENWISE_LAYERS)]
        tw = out.with_name(out.stem + "-tokenwise.onnx")
        tokenwise = tokenwise_int8(source, tw, chosen, weight_levels=63.0 if QUANT_REDUCE_RANGE else 127.0)
        if source != fp32:
            source.unlink(missing_ok=True)
        source = tw
    keep_fp32 = ffn_output_matmuls(source)
    if keep_fp32 and FFN_OUTLIER_CHANNELS:
        from spanqa.backends.outliers import split_outlier_channels

        split = out.with_name(out.stem + "-split.onnx")
        keep_fp32 = split_outlier_channels(source, split, keep_fp32, calibration, FFN_OUTLIER_CHANNELS)
        if source != fp32:
            source.unlink(missing_ok=True)
        source = split
    quantize_dynamic(
        str(source),
        str(out),
        op_types_to_quantize=list(INT8_OPS),
        nodes_to_exclude=keep_fp32,
        per_channel=QUANT_PER_CHANNEL,
        reduce_range=QUANT_REDUCE_RANGE,
        weight_type=QuantType.QInt8,
        # fused contrib ops have no ONNX shape inference: their outputs are float tensors
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    if source != fp32:
        source.unlink(missing_ok=True)
    return {
        "ops": list(INT8_OPS),
        "per_channel": QUANT_PER_CHANNEL,
        "reduce_range": QUANT_REDUCE_RANGE,
        "ffn_output_fp32": KEEP_FFN_OUTPUT_FP32,
        "ffn_outlier_channels": FFN_OUTLIER_CHANNELS if KEEP_FFN_OUTPUT_FP32 else None,
        "smooth_alpha": SMOOTH_ALPHA,
        "smoothed_inputs": smoothed_inputs,
        "tokenwise": TOKENWISE,
        "tokenwise_products": len(tokenwise),
    }


def _in_layers(node_name: str, layers: tuple[int, ...] | None) -> bool:
    return layers is None or any(f"layer.{i}/" in node_name for i in layers)


def ffn_output_matmuls(file: Path) -> list[str]:
    """The feed-forward output products (their input is a GELU's): kept fp32 (see KEEP_FFN_OUTPUT_FP32)."""
    return _ffn_outputs(file) if KEEP_FFN_OUTPUT_FP32 else []


def _ffn_outputs(file: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(file), load_external_data=False).graph
    made_by = {out: node for node in graph.node for out in node.output}

    def source(name: str) -> str | None:  # looks through a smoothing Mul (spanqa.backends.smoothing)
        node = made_by.get(name)
        if node is not None and node.op_type == "Mul" and node.name.endswith("_smooth"):
            node = made_by.get(node.input[0])
        return node.op_type if node is not None else None

    gelus = ("Gelu", "BiasGelu", "FastGelu")
    return [n.name for n in graph.node if n.op_type == "MatMul" and source(n.input[0]) in gelus]
