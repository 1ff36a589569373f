"""The int8 ceiling of this CPU: how fast its matrix products can run, and the q/s that would allow at most.

    python benchmarks/int8_ceiling.py [--limit 400] [--rounds 50] [--hf 42.8,6.9]
    python benchmarks/avx2_only.py -- python benchmarks/int8_ceiling.py --hf 29.6     # as on an AVX2 CPU

Issue 14 asks for 4x the HF pipeline (MiniLM-L6) and 5x (BERT-base) on VNNI CPUs, 2x on AVX2. This puts
those targets against the hardware. For each product shape of both models (K inputs -> N outputs, M tokens
in a row) it times nothing but that product, on one thread, four ways: OpenVINO fp32; openvino-int8's
kernels (int8 weights, activations in groups of 64 per token); OpenVINO static int8 (a FakeQuantize on the
input: scales known in advance, its fastest int8, though static int8 fails the 97% agreement bar, see
benchmarks/openvino_static.py); onnx-int8's kernels (ONNX Runtime dynamic int8, 7-bit weights per channel).
Fastest of --rounds runs, times the cores (perfect scaling), prices a question's products: its tokens from
the reader's own windows of the first --limit dev-half questions, padded as openvino-int8 pads them; the
attention products (token x token) at the same best rate; everything else (softmax, layer norms, GELU,
tokenizer, decoding, Python) at nothing. So each bound is a q/s no implementation of these models with
those kernels can pass here: "shipped int8" with the better of the two shipped backends' kernels,
"fastest" with the fastest way of each shape. --hf: the HF pipeline's q/s on this machine
(benchmarks/peers.py), for the ratio. Prints one table.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.base import cpu_cores
from spanqa.backends.openvino_backend import GROUP_SIZE, LENGTH_STEP, int8_weights
from spanqa.evaluation.bench import cpu_model, default_data
from spanqa.evaluation.squad import load_squad
from spanqa.reading.reader import DEFAULT_DOC_STRIDE, Reader

# hidden size, feed-forward size, layers: the products of one layer are (K, N) = (h, 3h) query-key-value,
# (h, h) attention output, (h, f) and (f, h) feed-forward
MODELS = {"MiniLM-L6 (shipped)": (384, 1536, 6), "BERT-base": (768, 3072, 12)}
WAYS = ("OpenVINO fp32", "openvino-int8", "OpenVINO static int8", "onnx-int8")  # the docstring says what


def product_model(m: int, k: int, n: int, way: str) -> Any:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([m, k], np.float32, name="x")
    w = ops.constant(rng.standard_normal((k, n)).astype(np.float32) * 0.05)
    source = x
    if way == "OpenVINO static int8":
        low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        source = ops.fake_quantize(x, low, high, low, high, 256)
    model = ov.Model([ops.matmul(source, w, False, False)], [x], "product")
    if way != "OpenVINO fp32":
        int8_weights(model)  # int8 -> Convert -> Multiply, as the shipped backend makes them
    return model


def rate(m: int, k: int, n: int, way: str, rounds: int, work: Path) -> float:
    """G multiply-adds per second, one thread, in the fastest of `rounds` runs: a ceiling."""
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    if way == "onnx-int8":
        session = onnx_runtime_product(m, k, n, work)
        run = lambda: session.run(None, {"x": x})  # noqa: E731
    else:
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if way == "openvino-int8":
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = GROUP_SIZE
        request = ov.Core().compile_model(product_model(m, k, n, way), "CPU", config).create_infer_request()
        run = lambda: request.infer({"x": x})  # noqa: E731
    for _ in range(3):
        run()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return m * k * n / min(times) / 1e9


def onnx_runtime_product(m: int, k: int, n: int, work: Path) -> Any:
    """One product quantized as the shipped onnx-int8 recipe quantizes them (dynamic, 7-bit weights per
    channel), in a one-thread ONNX Runtime session."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [w],
    )
    fp32, int8 = work / f"{k}x{n}.onnx", work / f"{k}x{n}-int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32)
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process a graph of one product
    quantize_dynamic(fp32, int8, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])


def tokens_per_question(limit: int) -> tuple[float, float]:
    """Per question: tokens, and the sum of squared window lengths, each window padded as openvino-int8
    pads it (the reader's own windower; nothing is run)."""
    reader = Reader.load(None, backend="onnx")
    examples = load_squad(default_data())[:limit]
    windower = reader._windower(None, DEFAULT_DOC_STRIDE)
    windows = windower([e.question for e in examples], [e.context for e in examples])
    lengths = np.asarray([-(-len(ids) // LENGTH_STEP) * LENGTH_STEP for ids in windows.ids], dtype=float)
    return float(lengths.sum() / len(examples)), float((lengths**2).sum() / len(examples))


def bound(
    name: str,
    shape: tuple[int, int, int],
    tokens: float,
    squares: float,
    args: argparse.Namespace,
    work: Path,
) -> tuple[str, float, float, float]:
    """Times `name`'s four product shapes (printing a row each) and returns its G multiply-adds per question
    and the q/s at most on every core: at the shipped backends' kernels, and at the fastest way per shape."""
    h, f, layers = shape
    shipped, fastest, seen = 0.0, 0.0, []  # one core's seconds for one question's products
    for k, n in ((h, 3 * h), (h, h), (h, f), (f, h)):
        rates = [rate(args.tokens, k, n, way, args.rounds, work) for way in WAYS]
        print(f"| {name} | {k} -> {n} | " + " | ".join(f"{r:.0f}" for r in rates) + " |", flush=True)
        seen.append(rates)
        shipped += layers * tokens * k * n / (max(rates[1], rates[3]) * 1e9)
        fastest += layers * tokens * k * n / (max(rates) * 1e9)
    attention = layers * 2 * squares * h  # query x key and weights x value, every head together
    shipped += attention / (max(max(r[1], r[3]) for r in seen) * 1e9)
    fastest += attention / (max(max(r) for r in seen) * 1e9)
    macs = layers * tokens * (4 * h * h + 2 * h * f) + attention
    return name, macs, cpu_cores() / shipped, cpu_cores() / fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=400, help="dev-half questions whose windows are counted")
    parser.add_argument("--tokens", type=int, default=768, help="M: tokens in one timed product (one lane's)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--hf", default=None, help="HF pipeline q/s here: MiniLM,BERT-base (peers.py)")
    args = parser.parse_args()
    hf = [float(x) for x in args.hf.split(",")] if args.hf else None
    tokens, squares = tokens_per_question(args.limit)
    print("# The int8 ceiling of this CPU\n")
    print(
        f"- CPU: {cpu_model()}, {cpu_cores()} cores; one thread per timed product, M = {args.tokens} tokens;"
    )
    print(
        f"  fastest of {args.rounds} runs; {tokens:.0f} tokens per question (first {args.limit}, dev-half)\n"
    )
    print("| model | product K -> N | " + " | ".join(f"{w} G MAC/s" for w in WAYS) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in WAYS) + " |")
    with tempfile.TemporaryDirectory(prefix="int8-ceiling-") as scratch:  # the one-product ONNX files
        bounds = [bound(name, shape, tokens, squares, args, Path(scratch)) for name, shape in MODELS.items()]
    print("\nq/s at most: every product at the timed rate on every core, nothing else costing anything.\n")
    print("| model | G MAC per question | q/s at most, shipped int8 | vs HF | q/s at most, fastest | vs HF |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for i, (model, macs, at_shipped, at_fastest) in enumerate(bounds):
        versus = [f"{q / hf[i]:.2f}x" if hf and i < len(hf) else "-" for q in (at_shipped, at_fastest)]
        cells = [model, f"{macs / 1e9:.2f}", f"{at_shipped:.0f}", versus[0], f"{at_fastest:.0f}", versus[1]]
        print("| " + " | ".join(cells) + " |")
    if hf:
        print(f"\nHF pipeline here (--hf, from benchmarks/peers.py): {', '.join(map(str, hf))} q/s")


if __name__ == "__main__":
    main()
