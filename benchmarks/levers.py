"""The speed levers of the ONNX backend, each measured against the others in one run.

    python benchmarks/levers.py [--model DIR] [--data FILE] [--limit 300] [--single 100] [--rounds 3]
                                [--variants fp32,int8,int8-ffn,int8-static] [--modes 8x2,8x1,...]

Graph variants (built into $SPANQA_CACHE/levers/<model hash>/ from the model's cached export):
- fp32: the fused fp32 export;
- int8: the shipped recipe (spanqa.backends.quantize: smoothing, dynamic int8, feed-forward outputs fp32);
- int8-ffn: the same with the feed-forward output products int8 too (the speed the fp32 products cost);
- int8-static: static int8 where ONNX Runtime's QDQ format has it (MatMul; activation scales calibrated on
  the last --calibration-n questions of the tuning file, MinMax), fused Attention dynamic int8 (QDQ has
  no Attention);
- int8-outliersK: the shipped recipe with the feed-forward output products int8 except their K largest
  input channels (spanqa.backends.outliers);
- int8-tw-ffn, int8-tw-all: the shipped recipe with token-wise int8 (spanqa.backends.tokenwise) for the
  feed-forward output products (fp32 in the shipped recipe), or for every product but fused attention;
  int8-tw-ffnL0+3: the same for the feed-forward outputs of layers 0 and 3 only (the others fp32);
- fp32-fusedln, int8-fusedln: the export with ONNX Runtime's fused (Skip)LayerNormalization kernels, as
  before spanqa.backends.layernorm wrote them as plain operators;
- int8-notw: the shipped recipe without token-wise int8 (feed-forward outputs fp32, as before 2026-11-27);
- int8-fullrange: the shipped recipe with 8-bit weights, not 7 (no reduce_range: safe with VNNI only);
- int8-alphaA: the shipped recipe with smoothing alpha A (e.g. int8-alpha0.4) instead of SMOOTH_ALPHA;
- int8-calN: the shipped recipe with smoothing calibrated on N windows of the tuning file's last questions
  instead of the export's verification batch;
- int8-keepA+B: the shipped recipe also keeping fp32 the products whose node names contain A or B (e.g.
  int8-keepqa_outputs, int8-keeplayer.5/+Attention_5);
- openvino: backend openvino-int8 (OpenVINO, from the fp32 export; spanqa.backends.openvino_backend).
Recipe variants combine with "~": int8-tw-ffn~fullrange is int8-tw-ffn with int8-fullrange's change too.
Modes: BxL = answer_batch with batch size B, L lanes (L one-thread runs in parallel, each on a share of the
batch's rows; L=1: one run using every core). Every (variant, mode) answers the same --limit questions per
round, the order rotated each round; --single questions are also answered one at a time for p50. Medians.
Accuracy: F1 on the questions, and the share of final answers equal to fp32's (the issue's >= 97%); of the
differing ones, how many are answer vs no answer (the decision moved, not the span); and the share of top
spans equal to fp32's whatever the decision.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends import quantize
from spanqa.backends.load import load_backend
from spanqa.backends.model_cache import cache_root, model_fingerprint
from spanqa.backends.model_dir import resolve_model
from spanqa.backends.onnx_backend import OnnxBackend, cpu_cores, onnx_file
from spanqa.backends.quantize import INT8_OPS
from spanqa.evaluation.bench import cpu_model, default_data
from spanqa.evaluation.metrics import get_raw_scores
from spanqa.evaluation.squad import load_squad
from spanqa.reading.reader import DEFAULT_DOC_STRIDE, Reader
from spanqa.reading.windows import pad_batch

TUNE = Path("/root/.cache/spanqa-work/data/dev-rest-tune.json")


def build_variants(
    model_dir: Path, names: list[str], calibration_file: Path, calibration_n: int
) -> dict[str, Path]:
    from spanqa.backends.export import verify_inputs

    fp32, int8 = onnx_file(model_dir, int8=False), onnx_file(model_dir, int8=True)
    work = cache_root() / "levers" / model_fingerprint(model_dir)[:32]
    work.mkdir(parents=True, exist_ok=True)
    files = {"fp32": fp32, "int8": int8, "openvino": fp32}
    for name in names:
        recipe = recipe_change(name)
        if recipe is None:
            continue
        files[name] = work / (name.replace("/", "_") + ".onnx")
        if files[name].is_file():
            continue
        calibration = verify_inputs(model_dir)
        if name.startswith("int8-cal"):  # smoothing calibrated on N windows of the tuning file
            calibration = calibration_batch(model_dir, calibration_file, int(name.removeprefix("int8-cal")))
        with changed_recipe(recipe):
            quantize.quantize_int8(fp32, files[name], calibration)
    if {"fp32-fusedln", "int8-fusedln"} & set(names):  # ONNX Runtime's fused layer norm kernels
        files.update(build_fused_layer_norms(model_dir, work / "fusedln"))
    if "int8-static" in names and not (work / "int8-static.onnx").is_file():
        build_static(model_dir, fp32, work / "int8-static.onnx", calibration_file, calibration_n)
    files["int8-static"] = work / "int8-static.onnx"
    return {n: files[n] for n in names}


def build_fused_layer_norms(model_dir: Path, out: Path) -> dict[str, Path]:
    """The export as it was before spanqa.backends.layernorm: ONNX Runtime's fused layer norm kernels."""
    from spanqa.backends import export

    if not (out / "model-int8.onnx").is_file():
        export.UNFUSE_LAYER_NORMS = False
        try:
            export.export_onnx(model_dir, out, int8=True)
        finally:
            export.UNFUSE_LAYER_NORMS = True
    return {"fp32-fusedln": out / "model.onnx", "int8-fusedln": out / "model-int8.onnx"}


def recipe_change(name: str) -> dict[str, Any] | None:
    """The settings of spanqa.backends.quantize that variant `name` changes (None: not a recipe variant).
    Variants combine with "~": int8-tw-ffn~keepAttention_ is int8-tw-ffn with int8-keepAttention_'s change."""
    if "~" in name:
        first, *more = name.split("~")
        changes = [recipe_change(first), *(recipe_change("int8-" + m) for m in more)]
        return None if None in changes else {k: v for c in changes for k, v in c.items()}  # type: ignore[union-attr]
    if name == "int8-ffn":
        return {"KEEP_FFN_OUTPUT_FP32": False}
    if name == "int8-notw":  # the recipe before token-wise feed-forward outputs: those products fp32
        return {"TOKENWISE": None}
    if name == "int8-fullrange":  # 8-bit weights, not 7
        return {"QUANT_REDUCE_RANGE": False}
    if name.startswith("int8-tw-ffnL"):  # token-wise feed-forward outputs of some layers: int8-tw-ffnL0+3
        layers = tuple(int(i) for i in name.removeprefix("int8-tw-ffnL").split("+"))
        return {"TOKENWISE": "ffn-output", "TOKENWISE_LAYERS": layers}
    if name in ("int8-tw-ffn", "int8-tw-all"):  # token-wise int8 for the feed-forward outputs, or all
        return {"TOKENWISE": "ffn-output" if name == "int8-tw-ffn" else "all"}
    if name.startswith("int8-outliers"):  # feed-forward outputs int8 except their K largest channels
        return {"FFN_OUTLIER_CHANNELS": int(name.removeprefix("int8-outliers") or 32)}
    if name.startswith("int8-alpha"):
        return {"SMOOTH_ALPHA": float(name.removeprefix("int8-alpha"))}
    if name.startswith("int8-cal"):
        return {}
    if name.startswith("int8-keep"):  # also fp32: the products whose node names contain one of the parts
        parts, shipped = name.removeprefix("int8-keep").split("+"), quantize.ffn_output_matmuls

        def kept(file: Path) -> list[str]:
            import onnx

            nodes = onnx.load(str(file)).graph.node
            return shipped(file) + [
                n.name for n in nodes if n.op_type in INT8_OPS and any(p in n.name for p in parts)
            ]

        return {"ffn_output_matmuls": kept}
    return None


@contextlib.contextmanager
def changed_recipe(changes: dict[str, Any]) -> Iterator[None]:
    saved = {k: getattr(quantize, k) for k in changes}
    for k, v in changes.items():
        setattr(quantize, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(quantize, k, v)


def tuning_windows(model_dir: Path, calibration_file: Path, n: int) -> tuple[Reader, Any]:
    """A reader of the model and its windows of the tuning file's last n questions (agreement is measured
    on the first ones)."""
    reader = Reader.load(model_dir, backend="onnx")
    examples = load_squad(calibration_file)[-n:]
    windower = reader._windower(None, DEFAULT_DOC_STRIDE)
    return reader, windower([e.question for e in examples], [e.context for e in examples])


def calibration_batch(model_dir: Path, calibration_file: Path, n: int) -> dict[str, np.ndarray]:
    """The first n of those windows as one padded batch."""
    reader, windows = tuning_windows(model_dir, calibration_file, n)
    return pad_batch(windows, list(range(min(n, len(windows)))), reader.pad_id, reader.token_types)


def build_static(model_dir: Path, fp32: Path, out: Path, calibration_file: Path, n: int) -> None:
    """Smoothing as the shipped recipe, then static QDQ int8 MatMuls, then dynamic int8 Attention."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from spanqa.backends.export import verify_inputs
    from spanqa.backends.quantize import QUANT_PER_CHANNEL, SMOOTH_ALPHA, ffn_output_matmuls
    from spanqa.backends.smoothing import smooth_graph

    smoothed = out.with_name("smoothed.onnx")
    smooth_graph(fp32, smoothed, verify_inputs(model_dir), SMOOTH_ALPHA or 0.5)
    # the quantizer needs every tensor's type; ONNX's own shape inference does not know the fused contrib ops
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(smoothed)), auto_merge=True), str(smoothed))
    reader, windows = tuning_windows(model_dir, calibration_file, n)
    feeds = [pad_batch(windows, [i], reader.pad_id, reader.token_types) for i in range(len(windows))]
    names = reader.backend.input_names

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.it, None)
            return None if batch is None else {k: batch[k] for k in names}

    qdq = out.with_name("static-qdq.onnx")
    quantize_static(
        str(smoothed),
        str(qdq),
        Feeds(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=ffn_output_matmuls(smoothed),
        per_channel=QUANT_PER_CHANNEL,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    quantize_dynamic(
        str(qdq),
        str(out),
        op_types_to_quantize=["Attention"],
        per_channel=QUANT_PER_CHANNEL,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    smoothed.unlink(missing_ok=True)
    qdq.unlink(missing_ok=True)


def answers(preds: list[Any]) -> list[tuple[str, str]]:
    """Each prediction's final answer ("" for no answer) and its top span whatever the decision."""
    return [(p.best.text if p.best else "", p.answers[0].text if p.answers else "") for p in preds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--limit", type=int, default=300, help="questions per batched run")
    parser.add_argument("--single", type=int, default=100, help="questions answered one at a time, for p50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="fp32,int8,int8-ffn,int8-static")
    parser.add_argument("--modes", default="8x1,8x2", help="BxL: batch size x lanes")
    parser.add_argument(
        "--single-variants",
        default="int8@1thread,int8@spin",
        help="VARIANT@1thread (one intra-op thread), VARIANT@spin or VARIANT@nospin (ONNX Runtime's "
        "intra-op threads busy-wait between operators, or sleep): extra single-question rows",
    )
    parser.add_argument("--calibration", type=Path, default=TUNE)
    parser.add_argument("--calibration-n", type=int, default=100)
    args = parser.parse_args()
    model_dir = resolve_model(args.model)
    variants = build_variants(model_dir, args.variants.split(","), args.calibration, args.calibration_n)
    modes = [tuple(int(x) for x in m.split("x")) for m in args.modes.split(",")]
    examples = load_squad(args.data)[: args.limit]
    items = [(e.question, e.context) for e in examples]
    readers = {}
    for name, file in variants.items():
        reader = Reader.load(model_dir, backend="onnx")
        if name == "openvino":
            reader.backend = load_backend("openvino-int8", model_dir)
        else:
            reader.backend = OnnxBackend(file, name, threads=cpu_cores())
        readers[name] = reader
        reader.answer_batch(items[:20])  # warm-up: first-run allocations
    for name in args.single_variants.split(","):  # single questions with other thread settings
        base, _, how = name.partition("@")
        if base not in variants:
            continue
        reader = Reader.load(model_dir, backend="onnx")
        reader.backend = OnnxBackend(variants[base], name, threads=1 if how == "1thread" else cpu_cores())
        if how in ("spin", "nospin"):  # intra-op threads busy-wait between operators, or sleep
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = cpu_cores()
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if how == "spin" else "0")
            reader.backend.session = ort.InferenceSession(str(variants[base]), opts)
        readers[name] = reader
        reader.answer(*items[0])
    configs = [(v, b, lanes) for v in variants for b, lanes in modes]
    if args.single:
        configs += [(v, 1, 0) for v in readers]
    qps: dict[tuple, list[float]] = {c: [] for c in configs}
    p50: dict[str, list[float]] = {v: [] for v in readers}
    got: dict[str, list[str]] = {}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        shift = r % len(configs)
        for config in configs[shift:] + configs[:shift]:
            name, batch, lanes = config
            reader = readers[name]
            print(f"levers: round {r + 1}: {name} {batch}x{lanes}", file=sys.stderr, flush=True)
            if lanes == 0:  # one question at a time, every core on it
                reader.backend.lanes = 1
                times = []
                for item in items[: args.single]:
                    t = time.perf_counter()
                    reader.answer(*item)
                    times.append(time.perf_counter() - t)
                p50[name].append(1000 * float(np.median(times)))
                qps[config].append(len(times) / sum(times))
                continue
            reader.backend.lanes = lanes
            t = time.perf_counter()
            preds = reader.answer_batch(items, batch_size=batch)
            qps[config].append(len(items) / (time.perf_counter() - t))
            got.setdefault(name, answers(preds))
    golds = {e.id: [a.text for a in e.answers] for e in examples}
    ids = [e.id for e in examples]
    print(f"# ONNX levers: {model_dir.name}, {len(items)} questions of {args.data.name}\n")
    load_after = os.getloadavg()[0]
    print(f"- CPU: {cpu_model()}, {cpu_cores()} cores; load average {load_before:.1f} -> {load_after:.1f}")
    print(f"- medians of {args.rounds} interleaved rounds")
    print(f"- command: python benchmarks/levers.py {' '.join(sys.argv[1:])}\n")
    print(
        "| variant | mode | queries/s (median) | each round | p50 ms (single) | F1 | same answer as fp32 "
        "| differing answers: answer vs no answer | same top span as fp32 |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for config in configs:
        name, batch, lanes = config
        final = [a for a, _ in got[name.partition("@")[0]]]
        _, f1 = get_raw_scores(golds, dict(zip(ids, final)))
        same = flips = top = "-"
        if "fp32" in got:
            pairs = list(zip(got[name.partition("@")[0]], got["fp32"]))
            differ = [a != b for (a, _), (b, _) in pairs]
            same = f"{100 * (1 - np.mean(differ)):.1f}%"
            # one side answers and the other does not: the decision moved, not the span
            flips = f"{sum((a == '') != (b == '') for (a, _), (b, _) in pairs)} of {sum(differ)}"
            top = f"{100 * np.mean([a == b for (_, a), (_, b) in pairs]):.1f}%"
        mode = "single" if lanes == 0 else f"batch {batch}, {lanes} lane{'s' if lanes > 1 else ''}"
        single = f"{statistics.median(p50[name]):.1f}" if lanes == 0 else "-"
        print(
            f"| {name} | {mode} | {statistics.median(qps[config]):.1f} | "
            f"{' / '.join(f'{q:.1f}' for q in qps[config])} | {single} | "
            f"{100 * np.mean(list(f1.values())):.2f} | {same} | {flips} | {top} |"
        )


if __name__ == "__main__":
    main()
