"""Run a command as on an AVX2-only CPU: AVX-512, VNNI and AMX hidden from CPUID, on this machine's cores.

    python benchmarks/avx2_only.py -- python benchmarks/peers.py --no-install --limit 400 ...
    python benchmarks/avx2_only.py --check          # only show what the libraries see

Issue 14 has a target for CPUs without an int8 dot product (AVX2 alone). Libraries choose their kernels by
asking the CPUID instruction (ONNX Runtime's MLAS, oneDNN inside OpenVINO and PyTorch, numpy), so hiding
the feature bits makes them run their AVX2 code, at this core's speed. Linux can make CPUID fault
(arch_prctl ARCH_SET_CPUID, available where /proc/cpuinfo lists cpuid_fault); benchmarks/hide_avx512.c, an
LD_PRELOAD shim built here with the C compiler on first use, answers the faults with those bits cleared.
$SPANQA_HIDDEN_CPU_FLAGS makes spanqa's own reading of /proc/cpuinfo (backend="auto", the tables' ISA
column) agree.

What it is not: an AVX2 CPU. Clock, caches and memory stay this Xeon's; an older AVX2 part (the issue's
EPYC) runs the same code at its own speed. Ratios of two configurations in the same run carry over better
than absolute rates.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from spanqa.backends.model_cache import cache_root

SHIM = Path(__file__).with_name("hide_avx512.c")
# What an AVX2-only CPU lacks, as /proc/cpuinfo names it (the shim clears the same features' CPUID bits)
HIDDEN_FLAGS = (
    "avx512f", "avx512dq", "avx512ifma", "avx512pf", "avx512er", "avx512cd", "avx512bw", "avx512vl",
    "avx512vbmi", "avx512_vbmi2", "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_4vnniw",
    "avx512_4fmaps", "avx512_vp2intersect", "avx512_fp16", "avx512_bf16", "amx_bf16", "amx_tile",
    "amx_int8", "avx_vnni", "avx_ifma",
)  # fmt: skip
CHECK = """
from numpy._core._multiarray_umath import __cpu_features__ as numpy_sees
print("numpy sees:", "AVX2" if numpy_sees["AVX2"] else "no AVX2",
      "and AVX-512" if numpy_sees["AVX512F"] else "and no AVX-512")
try:
    import openvino
    print("OpenVINO CPU capabilities:", openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
except ImportError:
    pass
try:
    import torch
    print("PyTorch CPU capability:", torch.backends.cpu.get_cpu_capability())
except ImportError:
    pass
"""


def build_shim() -> Path:
    """The shim compiled into spanqa's cache (again only when its source changes)."""
    source = SHIM.read_bytes()
    out = cache_root() / "avx2_only" / f"hide_avx512-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if out.is_file():
        return out
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        sys.exit("avx2_only: needs a C compiler (cc, or $CC) to build benchmarks/hide_avx512.c")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(partial), str(SHIM), "-ldl"], check=True)
    partial.replace(out)
    return out


def masked_env(shim: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(shim), env.get("LD_PRELOAD", "")]))
    env["SPANQA_HIDDEN_CPU_FLAGS"] = ",".join(HIDDEN_FLAGS)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only show what numpy, OpenVINO, PyTorch see")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.check and not command:
        parser.error("give a command after --, or --check")
    if not sys.platform.startswith("linux") or "cpuid_fault" not in Path("/proc/cpuinfo").read_text():
        sys.exit("avx2_only: this machine cannot make CPUID fault (/proc/cpuinfo lists no cpuid_fault)")
    env = masked_env(build_shim())
    print(f"avx2_only: hidden from CPUID: {', '.join(HIDDEN_FLAGS)}", file=sys.stderr, flush=True)
    check = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True)
    sys.stderr.write("".join(f"avx2_only: {line}\n" for line in check.stdout.splitlines()))
    if check.returncode != 0 or "and AVX-512" in check.stdout:
        sys.exit(f"avx2_only: the mask did not take hold:\n{check.stderr.strip()}")
    if command:
        sys.stderr.flush()
        os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
