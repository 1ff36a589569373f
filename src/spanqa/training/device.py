"""Which device trains, and in which precision: bf16 autocast only where it is measured faster.

On CPUs with AVX512-BF16 (or AMX) a bf16 training step of MiniLM-L6 is ~1.4x faster than fp32; on CPUs
without them PyTorch emulates bf16 and it is several times slower. Rather than guess from CPU flags, `auto`
times one forward and backward pass of a real batch in each precision before training and keeps the faster.
On CUDA, bf16 autocast is used wherever the GPU supports it.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

from spanqa.errors import InputError

TIMING_WINDOWS = 8  # windows per timed pass: long enough to be representative, short enough to be quick
GIVE_UP_RATIO = 2.0  # a bf16 warm-up pass this many times slower than fp32's decides without more timing
CLOSE_RATIO = (0.87, 1.15)  # bf16/fp32 time ratios within which one timed pass each does not decide


def resolve_device(name: str) -> Any:
    """The torch device for `--device`, or one line saying why it cannot be used here."""
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise InputError(f"--device must be cpu, cuda or cuda:N, got {name}")
    if not torch.cuda.is_available():
        why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise InputError(f"--device {name}: {why} (torch {torch.__version__}); train with --device cpu")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    return device


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def choose_precision(requested: str, device: Any, time_pass: Callable[[bool], float]) -> dict[str, Any]:
    """{"precision": "fp32" | "bf16", "timings_s": {...}, "reason": ...}; `time_pass(bf16)` times one
    forward and backward pass and must leave the model as it found it."""
    import torch

    if requested in ("fp32", "bf16"):
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bf16")
        return {"precision": requested, "timings_s": {}, "reason": "asked for with --precision"}
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return {"precision": "bf16", "timings_s": {}, "reason": "CUDA GPU with bf16 support"}
        return {"precision": "fp32", "timings_s": {}, "reason": "this CUDA GPU does not support bf16"}
    fp32_warm, bf16_warm = time_pass(False), time_pass(True)  # first passes pay for allocation and kernels
    timings = {"fp32": fp32_warm, "bf16": bf16_warm}
    if bf16_warm < GIVE_UP_RATIO * fp32_warm:  # close enough to be worth timing again, alternately
        fp32, bf16 = [time_pass(False)], [time_pass(True)]
        if CLOSE_RATIO[0] < bf16[0] / fp32[0] < CLOSE_RATIO[1]:  # too close to call from one pass each
            fp32.append(time_pass(False))
            bf16.append(time_pass(True))
        timings = {"fp32": min(fp32), "bf16": min(bf16)}
    faster = "bf16" if timings["bf16"] < timings["fp32"] else "fp32"
    rounded = {k: round(v, 3) for k, v in timings.items()}
    return {
        "precision": faster,
        "timings_s": rounded,
        "reason": f"timed forward+backward passes of {TIMING_WINDOWS} windows in each: "
        f"fp32 {rounded['fp32']} s, bf16 {rounded['bf16']} s",
    }
