"""The README's two commands on a fresh machine: `make test` gets what its tests need or says what to run,
and the default install is what users run (ONNX Runtime and the service included)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPS_SCRIPT = ROOT / ".ci" / "install-test-deps"
BASH = "/bin/bash"


def fake_tools(bin_dir: Path, *, uid: int = 0, apt: str | None = "install", sudo: bool = False) -> Path:
    """A PATH holding only stand-ins: `id`, `apt-get` (which 'installs' by creating the files, or fails),
    and `sudo` when wanted. Every apt-get call is recorded in calls.log."""
    bin_dir.mkdir()
    calls = bin_dir / "calls.log"
    tools = {"id": f"#!{BASH}\necho {uid}\n"}
    if apt is not None:
        action = (
            'if [ "$1" = install ]; then : > "$SPANQA_CHROMIUM"; : > "$SPANQA_EMOJI_FONT"; '
            '/bin/chmod +x "$SPANQA_CHROMIUM"; fi; exit 0'
            if apt == "install"
            else "echo 'E: Unable to locate package chromium' >&2; exit 100"
        )
        tools["apt-get"] = f'#!{BASH}\necho "apt-get $*" >> {calls}\n{action}\n'
    if sudo:
        tools["sudo"] = f'#!{BASH}\n[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\nexec "$@"\n'
    for name, body in tools.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return calls


def run_deps(tmp_path: Path, *, have: tuple[str, ...] = (), **tools) -> tuple:
    chromium, font = tmp_path / "chromium", tmp_path / "NotoColorEmoji.ttf"
    if "chromium" in have:
        chromium.write_text("")
        chromium.chmod(0o755)
    if "font" in have:
        font.write_text("")
    calls = fake_tools(tmp_path / "bin", **tools)
    env = {
        "PATH": str(tmp_path / "bin"),
        "SPANQA_CHROMIUM": str(chromium),
        "SPANQA_EMOJI_FONT": str(font),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run([BASH, str(DEPS_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return done, calls.read_text() if calls.is_file() else ""


def test_nothing_is_installed_when_chromium_and_the_font_are_there(tmp_path):
    done, calls = run_deps(tmp_path, have=("chromium", "font"))
    assert done.returncode == 0 and done.stderr == ""
    assert calls == ""


def test_missing_chromium_and_font_are_installed_with_apt_get_as_root(tmp_path):
    done, calls = run_deps(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "apt-get update" in calls
    assert "apt-get install -y -qq chromium fonts-noto-color-emoji" in calls
    assert (tmp_path / "chromium").is_file()


def test_a_user_with_passwordless_sudo_gets_them_installed_too(tmp_path):
    done, calls = run_deps(tmp_path, uid=1000, sudo=True)
    assert done.returncode == 0, done.stderr
    assert "apt-get install -y -qq chromium fonts-noto-color-emoji" in calls


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert lines and lines[-1].startswith("make test: "), done.stderr
    return lines[-1]


def test_a_user_who_cannot_install_is_told_the_one_command_to_run(tmp_path):
    done, calls = run_deps(tmp_path, uid=1000, sudo=False)
    assert done.stderr.count("\n") == 1
    assert "sudo apt-get install -y chromium fonts-noto-color-emoji" in one_line(done)
    assert calls == ""


def test_a_machine_without_apt_get_is_told_where_chromium_must_be(tmp_path):
    done, _ = run_deps(tmp_path, apt=None)
    assert done.stderr.count("\n") == 1
    assert str(tmp_path / "chromium") in one_line(done)


def test_a_failed_apt_get_stops_with_one_line_naming_its_log(tmp_path):
    done, _ = run_deps(tmp_path, apt="fail")
    line = one_line(done)
    assert "apt-get could not install chromium" in line
    log = Path(line.split("its output: ")[1].split(")")[0])
    assert "Unable to locate package" in log.read_text()


def test_only_the_font_missing_never_stops_the_suite(tmp_path):
    done, _ = run_deps(tmp_path, have=("chromium",), uid=1000)
    assert done.returncode == 0
    assert "note: fonts-noto-color-emoji" in done.stderr


def test_make_test_checks_its_system_dependencies_before_running_pytest():
    plan = subprocess.run(
        ["make", "-n", "test", "PYTHON=false"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout.splitlines()
    deps = next(i for i, line in enumerate(plan) if "install-test-deps" in line)
    tests = next(i for i, line in enumerate(plan) if "-m pytest" in line)
    assert deps < tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci  # one place knows how: the script make runs


def test_the_default_install_holds_onnx_runtime_and_the_service():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {dep.split(";")[0].split("<")[0].split(">")[0].split("=")[0] for dep in project["dependencies"]}
    assert {"onnx", "onnxruntime", "fastapi", "uvicorn", "pydantic", "httptools", "uvloop"} <= base
    extras = project["optional-dependencies"]
    assert any(dep.startswith("matplotlib") for dep in extras["train"])  # plotting stays optional


def test_the_quick_start_says_how_to_get_spanqa_on_the_path():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start")[1].split("\n## ")[0]
    assert ". .venv/bin/activate" in quick and "spanqa --version" in quick
    assert "rajpurkar.github.io/SQuAD-explorer" in quick  # where the data for evaluate and benchmarks is


def test_spanqa_version_prints_the_package_version():
    from spanqa import __version__

    done = subprocess.run(
        [sys.executable, "-c", "import sys; from spanqa.cli.main import main; sys.exit(main())", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"spanqa {__version__}"


@pytest.mark.parametrize(
    "script,source",
    [
        ("batch_size.py", "rajpurkar.github.io/SQuAD-explorer"),
        ("load.py", "rajpurkar.github.io/SQuAD-explorer"),
        ("long_context.py", "rajpurkar.github.io/SQuAD-explorer"),
        ("throughput.py", "rajpurkar.github.io/SQuAD-explorer"),
        ("adaptation.py", "github.com/google-research-datasets/tydiqa"),
    ],
)
def test_a_benchmark_without_its_data_says_where_the_data_comes_from(tmp_path, script, source):
    option = "--data-dir" if script == "adaptation.py" else "--data"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), option, str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(tmp_path / "absent") in lines[0] and source in lines[0]
