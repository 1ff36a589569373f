"""benchmarks/avx2_only.py: CPUID without AVX-512 or VNNI, or a clear refusal where Linux cannot do that."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "from numpy._core._multiarray_umath import __cpu_features__ as f;"
    "from spanqa.backends.openvino_backend import has_int8_dot_product;"
    "print(f['AVX512F'], f['AVX512VNNI'], f['AVX2'], has_int8_dot_product())"
)


def can_mask() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and "cpuid_fault" in cpuinfo.read_text() and shutil.which("cc") is not None


def test_libraries_see_an_avx2_cpu_or_the_refusal_says_why(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "avx2_only.py"), "--", sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={**os.environ, "SPANQA_CACHE": str(tmp_path)},  # the shim is built afresh
    )
    if can_mask():
        assert done.returncode == 0, done.stderr
        # numpy asks CPUID; spanqa reads /proc/cpuinfo less the hidden flags: both see no int8 dot product
        assert done.stdout.split() == [
            "False",
            "False",
            str("avx2" in Path("/proc/cpuinfo").read_text()),
            "False",
        ]
        assert "numpy sees: " in done.stderr and "and no AVX-512" in done.stderr
    else:
        assert done.returncode != 0
        assert "avx2_only:" in done.stderr and "Traceback" not in done.stderr
