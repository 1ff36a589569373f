"""A model directory -> ONNX files (fp32 with ONNX Runtime's transformer fusions, and int8), verified.

Exports are cached by the model's content (`cached_export_dir`), so a changed model is exported again and
an unchanged one never twice. Every file is written under a temporary name and renamed into place, and a
lock file makes concurrent processes wait for one export instead of each running their own: an interrupted
or concurrent export never leaves a half-written model behind.

Only `export_onnx` needs torch and transformers; the rest of this module is cheap to import, so the ONNX
backend can find a cached export without them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.model_cache import (
    EXPORT_RECIPE,
    FP32_FILE,
    INT8_FILE,
    OPSET,
    REPORT_FILE,
    cached_export_dir,
    exclusive,
    model_fingerprint,
    read_report,
    write_json_atomic,
)
from spanqa.errors import ModelError

log = logging.getLogger(__name__)

# An fp32 export must reproduce PyTorch's logits to within this (absolute, scaled by the logits' size).
FP32_TOLERANCE = 2e-3
# Layer norms written as plain element-wise operators (spanqa.backends.layernorm): ONNX Runtime's fused CPU
# kernels for them are ~4x slower; a MiniLM-L6 question took 13% less time in int8, 10% in fp32.
UNFUSE_LAYER_NORMS = True
# Model types whose graphs ONNX Runtime's BERT optimizer knows how to fuse.
_FUSABLE = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "deberta")

# Real text to verify an export on: several lengths, so one batch also checks dynamic axes and padding.
VERIFY_CONTEXT = (
    "The Old Point lighthouse stands on a granite headland at the mouth of the harbour. Construction "
    "began in 1846 under the engineer Margaret Hale, and the tower was first lit on 12 March 1849, using "
    "a lamp that burned whale oil. It is 31 metres tall and its light can be seen from 20 nautical miles "
    "away. The keepers' cottages were turned into a museum in 1987."
)
VERIFY_QUESTIONS = (
    "When was the lighthouse first lit?",
    "Who was the engineer?",
    "What did the lamp burn before electricity reached the headland and the keepers left for good?",
    "How tall is it?",
)


def ensure_cached_export(model_dir: Path, int8: bool, fingerprint: str | None = None) -> Path:
    """The cached ONNX file for this model (fp32 or int8), exported first if it is not there yet."""
    out = cached_export_dir(model_dir, fingerprint)
    file = out / (INT8_FILE if int8 else FP32_FILE)
    if file.is_file():
        return file
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out.with_name(out.name + ".lock")):
        if not file.is_file():  # another process may have finished it while this one waited
            log.info("exporting %s to ONNX (%s) into %s; later loads reuse it", model_dir, _kind(int8), out)
            export_onnx(model_dir, out, int8=int8, fingerprint=fingerprint)
    return file


def export_onnx(
    model_dir: Path, out_dir: Path, *, int8: bool = False, fingerprint: str | None = None
) -> dict[str, Any]:
    """Write model.onnx (and model-int8.onnx) into out_dir, verified against PyTorch; returns the report.

    An fp32 file already in out_dir is reused for the int8 one. The report (also saved as export.json)
    holds the largest logit difference to PyTorch of each file on real text.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = read_report(out_dir)
    fingerprint = fingerprint or model_fingerprint(model_dir)
    if report.get("fingerprint") != fingerprint:  # files from another model are not reused
        report = {
            "fingerprint": fingerprint,
            "recipe": EXPORT_RECIPE,
            "source": str(Path(model_dir).resolve()),
        }
        for stale in (FP32_FILE, INT8_FILE):
            (out_dir / stale).unlink(missing_ok=True)
    tmp = out_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        inputs = verify_inputs(model_dir)
        reference: tuple[np.ndarray, np.ndarray] | None = None
        if not (out_dir / FP32_FILE).is_file():
            model = _load_torch_model(model_dir)
            reference = _torch_logits(model, inputs)
            report["fp32"] = _export_fp32(model, model_dir, tmp, inputs, reference)
            del model
            os.replace(tmp / FP32_FILE, out_dir / FP32_FILE)
            write_json_atomic(out_dir / REPORT_FILE, report)  # an interrupted int8 step keeps this one
        if int8:
            if reference is None:
                reference = _torch_logits(_load_torch_model(model_dir), inputs)
            report["int8"] = _quantize(out_dir / FP32_FILE, tmp / INT8_FILE, inputs, reference)
            os.replace(tmp / INT8_FILE, out_dir / INT8_FILE)
        write_json_atomic(out_dir / REPORT_FILE, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def verify_inputs(model_dir: Path) -> dict[str, np.ndarray]:
    """VERIFY_QUESTIONS about VERIFY_CONTEXT as one padded batch, tokenized as the reader pairs them.

    Built with the tokenizer alone (question first, context truncated to 128 tokens), so that backends
    sit below the reading layer: comparing torch and ONNX logits needs realistic inputs, not the reader's
    windows.
    """
    from spanqa.backends.model_dir import input_spec, load_tokenizer, read_config

    pad_id, token_types = input_spec(read_config(model_dir))
    tok = load_tokenizer(model_dir)
    tok.enable_truncation(128, strategy="only_second")
    tok.enable_padding(pad_id=pad_id)
    encs = tok.encode_batch([(q, VERIFY_CONTEXT) for q in VERIFY_QUESTIONS])
    batch = {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
    }
    if not token_types:
        batch["token_type_ids"][:] = 0
    return batch


def _logits_module(model: Any, input_names: tuple[str, ...]) -> Any:
    """The QA model as a module with plain tensor inputs and two outputs, the graph's interface."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> tuple[Any, Any]:
            out = self.model(**dict(zip(input_names, args)))
            return out.start_logits, out.end_logits

    return Logits().eval()


def _load_torch_model(model_dir: Path) -> Any:
    try:
        import torch
        from transformers import AutoModelForQuestionAnswering
        from transformers import logging as hf_logging
    except ImportError as e:
        raise ModelError(f"exporting to ONNX needs torch and transformers ({e})") from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        # eager attention traces into the MatMul/Softmax pattern that ONNX Runtime fuses into Attention
        model = AutoModelForQuestionAnswering.from_pretrained(
            str(model_dir), dtype=torch.float32, attn_implementation="eager", trust_remote_code=False
        )
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot load a question-answering model from {model_dir}: {e}") from None
    return model.eval()


def _graph_inputs(model: Any) -> tuple[str, ...]:
    import inspect

    from spanqa.backends.base import MODEL_INPUTS

    params = inspect.signature(model.forward).parameters
    return tuple(n for n in MODEL_INPUTS if n in params)


def _torch_logits(model: Any, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    names = _graph_inputs(model)
    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(inputs[k]) for k in names})
    return out.start_logits.float().numpy(), out.end_logits.float().numpy()


def _export_fp32(
    model: Any, model_dir: Path, tmp: Path, inputs: dict[str, np.ndarray], reference: tuple
) -> dict[str, Any]:
    import warnings

    import torch

    names = _graph_inputs(model)
    raw = tmp / "raw.onnx"
    example = tuple(torch.from_numpy(inputs[k][:2, :16].copy()) for k in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in (*names, "start_logits", "end_logits")}
    started = time.perf_counter()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in torch 2.9+, but the dynamo one needs onnxscript and
        # gives graphs that ONNX Runtime's BERT fusions do not match yet.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                _logits_module(model, names),
                example,
                str(raw),
                dynamo=False,
                input_names=list(names),
                output_names=["start_logits", "end_logits"],
                dynamic_axes=axes,
                opset_version=OPSET,
            )
        except Exception as e:  # the exporter raises many types; all mean the same to the caller
            raise ModelError(f"cannot export {model_dir} to ONNX: {type(e).__name__}: {e}") from None
    model.eval()  # the exporter restores the wrapper's mode, which is training for a fresh module
    raw_diff = _max_diff(_onnx_logits(raw, inputs), reference, inputs)
    if raw_diff > FP32_TOLERANCE * _scale(reference):
        raise ModelError(
            f"the ONNX export of {model_dir} disagrees with PyTorch (max logit diff {raw_diff:.3g})"
        )
    fused, fusions = _fuse(raw, tmp / FP32_FILE, model_dir)
    diff = _max_diff(_onnx_logits(tmp / FP32_FILE, inputs), reference, inputs) if fused else raw_diff
    if fused and diff > FP32_TOLERANCE * _scale(reference):
        log.warning(
            "fused graph disagrees with PyTorch (max logit diff %.3g); keeping the plain export", diff
        )
        fused, fusions, diff = False, {}, raw_diff
    if not fused:
        os.replace(raw, tmp / FP32_FILE)
    unfused = 0
    if UNFUSE_LAYER_NORMS:
        from spanqa.backends.layernorm import unfuse_layer_norms

        plain = tmp / "plain-layer-norms.onnx"
        unfused = unfuse_layer_norms(tmp / FP32_FILE, plain)
        if unfused:
            plain_diff = _max_diff(_onnx_logits(plain, inputs), reference, inputs)
            if plain_diff <= FP32_TOLERANCE * _scale(reference):
                os.replace(plain, tmp / FP32_FILE)
                diff = plain_diff
            else:
                log.warning("plain layer norms differ from PyTorch (%.3g); fused ones kept", plain_diff)
                unfused = 0
    log.info("fp32 ONNX: max logit difference to PyTorch %.2g; fusions %s", diff, fusions or "none")
    return {
        "max_logit_diff": diff,
        "fusions": fusions,
        "plain_layer_norms": unfused,
        "inputs": list(names),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _fuse(raw: Path, out: Path, model_dir: Path) -> tuple[bool, dict[str, int]]:
    """ONNX Runtime's BERT fusions (attention, skip layer norm, GELU, embeddings); False if none applied."""
    from spanqa.backends.model_dir import read_config

    config = read_config(model_dir)
    if config.get("model_type") not in _FUSABLE:
        return False, {}
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with _quiet("onnxruntime", "onnx"):
            optimized = optimize_model(
                str(raw),
                model_type="bert",
                num_heads=int(config.get("num_attention_heads") or config.get("n_heads") or 0),
                hidden_size=int(config.get("hidden_size") or config.get("dim") or 0),
                opt_level=0,  # the session applies ONNX Runtime's own optimizations when it loads
            )
            stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
            optimized.save_model_to_file(str(out))
    except Exception as e:  # a fusion failure only costs speed: keep the plain export
        log.warning(
            "ONNX Runtime's transformer fusions failed (%s: %s); keeping the plain export", type(e), e
        )
        return False, {}
    return bool(stats), stats


def _quantize(fp32: Path, out: Path, inputs: dict[str, np.ndarray], reference: tuple) -> dict[str, Any]:
    from spanqa.backends.quantize import quantize_int8

    started = time.perf_counter()
    with _quiet("onnxruntime", "root"):
        settings = quantize_int8(fp32, out, inputs)
    logits = _onnx_logits(out, inputs)
    diff = _max_diff(logits, reference, inputs)
    agree = _same_best_tokens(logits, reference, inputs)
    log.info(
        "int8 ONNX: max logit difference to PyTorch %.2g; best tokens agree on %.0f%%", diff, 100 * agree
    )
    return {
        "max_logit_diff": diff,
        "best_token_agreement": agree,
        **settings,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _onnx_logits(file: Path, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    from spanqa.backends.layernorm import UNFUSED_OPTIMIZERS

    session = ort.InferenceSession(
        str(file), providers=["CPUExecutionProvider"], disabled_optimizers=list(UNFUSED_OPTIMIZERS)
    )
    names = [i.name for i in session.get_inputs()]
    start, end = session.run(["start_logits", "end_logits"], {k: inputs[k] for k in names})
    return start, end


def _max_diff(got: tuple, want: tuple, inputs: dict[str, np.ndarray]) -> float:
    """Largest difference over real tokens (padding positions are never read)."""
    real = inputs["attention_mask"].astype(bool)
    return float(max(np.abs(g - w)[real].max() for g, w in zip(got, want)))


def _scale(reference: tuple) -> float:
    return max(1.0, float(max(np.abs(r).max() for r in reference)))


def _same_best_tokens(got: tuple, want: tuple, inputs: dict[str, np.ndarray]) -> float:
    real = inputs["attention_mask"].astype(bool)
    same = [
        (np.where(real, g, -np.inf).argmax(1) == np.where(real, w, -np.inf).argmax(1))
        for g, w in zip(got, want)
    ]
    return float(np.mean(same[0] & same[1]))


def _kind(int8: bool) -> str:
    return "int8" if int8 else "fp32"


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """ONNX Runtime's tools log warnings meant for their developers (e.g. 'run pre-processing first')."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
