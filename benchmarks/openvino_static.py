"""Static int8 through OpenVINO (NNCF post-training quantization) against the shipped openvino-int8.

    pip install 'nncf>=3.4,<4'      # not a spanqa dependency: only this benchmark needs it
    python benchmarks/openvino_static.py [--data runs/data/dev-rest-tune.json] [--limit 600]
                                         [--calibration-n 300] [--variants static,static-keep-ffn-out,...]

Issue 14 asks for static int8 (activation scales calibrated on tuning data) against dynamic. ONNX Runtime's
QDQ static recipe was measured in benchmarks/levers.py (int8-static). This is the same question asked of
OpenVINO, whose CPU plugin also runs the attention products in int8 once NNCF has put quantizers on them.
Calibration: the windows of the tuning file's last --calibration-n questions, exactly as the reader feeds
them; speed and agreement (final answers equal to ONNX Runtime fp32's): its first --limit questions, batched,
medians of --rounds rounds in alternating order. Tuning data only, never dev-half. Prints one table.

Variants (all with nncf.ModelType.TRANSFORMER and the MIXED preset, NNCF's recipe for BERT-like models):
- static: every product NNCF quantizes by default;
- static-keep-qa: the qa_outputs product (the start/end logits themselves) left to the shipped dynamic int8;
- static-keep-ffn-out: also the feed-forward output products (their inputs have the widest ranges);
- static-keep-attention: also the two products inside attention (query x key, weights x value) in fp32;
- static-alpha0.5: static-keep-qa with SmoothQuant alpha 0.5 instead of NNCF's default.
Products NNCF leaves alone get the shipped int8 weights with dynamic activation groups, as in openvino-int8.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from levers import tuning_windows  # a sibling script: benchmarks/ is on sys.path when run
from spanqa.backends.load import load_backend
from spanqa.backends.model_dir import resolve_model
from spanqa.backends.onnx_backend import onnx_file
from spanqa.backends.openvino_backend import OpenVinoBackend, int8_weights
from spanqa.evaluation.bench import cpu_model, final_answer
from spanqa.evaluation.squad import load_squad
from spanqa.reading.reader import Reader
from spanqa.reading.windows import pad_batch

VARIANTS = ("static", "static-keep-qa", "static-keep-ffn-out", "static-keep-attention", "static-alpha0.5")


def calibration_feeds(reader: Reader, windows: Any, backend: OpenVinoBackend) -> list[dict[str, np.ndarray]]:
    """Each calibration window as its own feed, padded as openvino-int8 pads what it runs."""
    one_each = (pad_batch(windows, [i], reader.pad_id, reader.token_types) for i in range(len(windows)))
    return [backend.feed(batch) for batch in one_each]


def products(model: Any, keep: str) -> list[str]:
    """Names of the MatMuls a variant leaves out of static quantization."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        name = op.get_friendly_name()
        constant = op.input(1).get_source_output().get_node().get_type_name() == "Constant"
        if (
            "qa_outputs" in name
            or (keep in ("ffn-out", "attention") and "/output/dense/" in name and "attention" not in name)
            or (keep == "attention" and not constant)
        ):
            names.append(name)
    return names


def quantized(fp32: Any, variant: str, windows: list[dict[str, np.ndarray]]) -> Any:
    import nncf

    model = fp32.clone()  # NNCF could not build its graph from a second read of the same file
    keep = {"static": "", "static-keep-ffn-out": "ffn-out", "static-keep-attention": "attention"}.get(
        variant, "qa"
    )
    ignored = products(model, keep) if keep else []
    advanced = None
    if variant.startswith("static-alpha"):
        alpha = float(variant.removeprefix("static-alpha"))
        advanced = nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=alpha)
        )
    model = nncf.quantize(
        model,
        nncf.Dataset(windows),
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(windows),
        ignored_scope=nncf.IgnoredScope(names=ignored),
        advanced_parameters=advanced,
    )
    int8_weights(model)  # the products left out: int8 weights, dynamic activations, as openvino-int8
    return model


def static_backend(reader: Reader, model: Any) -> OpenVinoBackend:
    backend = load_backend("openvino-int8", reader.model_dir)
    backend._model = model  # the same compile settings and lanes as the shipped backend, another graph
    backend._single = backend.compile(
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": backend.threads}
    )
    return backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=Path("runs/data/dev-rest-tune.json"))
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--calibration-n", type=int, default=300)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import nncf
        import openvino
    except ImportError:
        sys.exit("openvino_static: needs NNCF: pip install 'nncf>=3.4,<4'")
    wanted = args.variants.split(",")
    if unknown := [v for v in wanted if v not in VARIANTS and not v.startswith("static-alpha")]:
        sys.exit(f"openvino_static: unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    items = [(e.question, e.context) for e in load_squad(args.data)[: args.limit]]
    reader, calibration = tuning_windows(resolve_model(args.model), args.data, args.calibration_n)
    fp32 = [final_answer(p) for p in reader.answer_batch(items)]
    shipped = load_backend("openvino-int8", reader.model_dir)
    windows = calibration_feeds(reader, calibration, shipped)
    fp32_graph = openvino.Core().read_model(str(onnx_file(reader.model_dir, int8=False)))
    backends: dict[str, Any] = {"openvino-int8 (shipped, dynamic)": shipped}
    for variant in wanted:
        started = time.perf_counter()
        backends[variant] = static_backend(reader, quantized(fp32_graph, variant, windows))
        print(f"{variant}: quantized in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    rates: dict[str, list[float]] = {name: [] for name in backends}
    agree: dict[str, float] = {}
    for r in range(args.rounds):
        for name in list(backends) if r % 2 == 0 else list(backends)[::-1]:
            reader.backend = backends[name]
            if r == 0:
                reader.answer_batch(items[:16])  # compiles the lanes' model outside the timing
            started = time.perf_counter()
            preds = reader.answer_batch(items)
            rates[name].append(len(items) / (time.perf_counter() - started))
            agree[name] = 100 * float(np.mean([final_answer(p) == a for p, a in zip(preds, fp32)]))
    title = f"Static int8 through OpenVINO (NNCF {nncf.__version__})"
    print(f"# {title}: {len(items)} questions of {args.data.name}\n")
    print(f"- CPU: {cpu_model()}; batched, medians of {args.rounds} rounds; calibration: the last")
    print(f"  {args.calibration_n} questions ({len(windows)} windows)\n")
    print("| variant | queries/s (median) | vs shipped | each round | same answer as fp32 |")
    print("| --- | ---: | ---: | --- | ---: |")
    base = statistics.median(next(iter(rates.values())))
    for name, each in rates.items():
        rounds = " / ".join(f"{x:.1f}" for x in each)
        rate = statistics.median(each)
        print(f"| {name} | {rate:.1f} | {rate / base:.2f}x | {rounds} | {agree[name]:.1f}% |")


if __name__ == "__main__":
    main()
