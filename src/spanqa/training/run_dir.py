"""Where a training run keeps its state, outside the model directory and the work tree, written so that a
machine that stops at any moment leaves either the previous file or the new one, never half of one.

A run directory holds train_config.json (the settings), checkpoint.pt (model, optimiser, schedule, plan)
and progress.json (where the run stands, rewritten every few seconds, read by `spanqa train --status`).
By default it is `<cache>/train/<out name>-<hash of out's absolute path>`, the cache being $SPANQA_CACHE,
else $XDG_CACHE_HOME/spanqa, else ~/.cache/spanqa. Runs started before run directories existed kept these
files in the output directory itself; they are found and resumed there.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from spanqa.backends.model_cache import cache_root
from spanqa.errors import InputError

CONFIG_FILE = "train_config.json"
CHECKPOINT_FILE = "checkpoint.pt"
PROGRESS_FILE = "progress.json"
LOCK_FILE = "train.lock"
RUN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, PROGRESS_FILE, LOCK_FILE)
CHECKPOINT_FORMAT = 2  # 1 (no "format" key): model, optim, sched, step, elapsed, losses, torch_rng only


def default_run_dir(out: str | Path) -> Path:
    out = Path(out).expanduser().resolve()
    digest = hashlib.sha1(str(out).encode("utf-8")).hexdigest()[:8]
    return cache_root() / "train" / f"{out.name}-{digest}"


def run_dir_for(out: str | Path, checkpoint_dir: str | None) -> Path:
    """The run directory of `out`: the one named, an old run's own output directory, or the default."""
    if checkpoint_dir:
        return Path(checkpoint_dir).expanduser()
    if (Path(out) / CHECKPOINT_FILE).is_file() and (Path(out) / CONFIG_FILE).is_file():
        return Path(out)
    return default_run_dir(out)


def status_dir(path: str | Path) -> Path:
    """`--status DIR` takes a run directory or the output directory of a run."""
    path = Path(path).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    run = default_run_dir(path)
    if (run / CONFIG_FILE).is_file():
        return run
    raise InputError(f"no training run in {path} (nor in its run directory {run})")


def hold_lock(run: Path) -> Any:
    """An exclusive lock on the run for as long as the returned file stays open (the OS drops it when the
    process ends, however it ends): two processes never train the same run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    handle = open(run / LOCK_FILE, "a+")  # held open for the whole run on purpose
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        progress = read_progress(run) or {}
        raise InputError(
            f"the run in {run} is being trained by another process (pid {progress.get('pid', '?')}); "
            "stop it first (Ctrl-C or SIGTERM checkpoints and stops it)"
        ) from None
    return handle


def write_atomic(file: Path, data: bytes) -> None:
    """Write to a temporary file, flush it to disk, then rename it over `file` and flush the directory."""
    tmp = file.with_name(file.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, file)
    _fsync_dir(file.parent)


def write_json(file: Path, obj: Any) -> None:
    write_atomic(file, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def save_checkpoint(file: Path, state: dict[str, Any]) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(file, buffer.getbuffer())


def load_checkpoint(file: Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's state, tensors on the CPU whatever device wrote them (mmap: tensors stay on disk)."""
    import torch

    try:
        return torch.load(file, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as e:  # a damaged file must say which file, not show a pickle traceback
        raise InputError(f"cannot read the checkpoint {file}: {type(e).__name__}: {e}") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def read_progress(run: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def legacy_progress(run: Path, cfg: Any) -> dict[str, Any]:
    """What an old-format run's checkpoint tells without reading its tensors: the step, the loss, the time,
    and the total steps solved from where its learning rate stands on the linear schedule."""
    ckpt = run / CHECKPOINT_FILE
    state = load_checkpoint(ckpt, mmap=True)
    step, losses = int(state["step"]), state.get("losses") or []
    sched = state.get("sched") or {}
    last_lr, base_lr = (sched.get("_last_lr") or [None])[0], (sched.get("base_lrs") or [None])[0]
    total = _total_from_lr(step, last_lr, base_lr, cfg.warmup)
    return {
        "format": 1,
        "state": "checkpointed",
        "step": step,
        "total_steps": total,
        "windows_done": step * cfg.batch_size,
        "windows_total": total * cfg.batch_size if total else None,
        "windows_approximate": True,
        "loss": float(sum(losses[-50:]) / len(losses[-50:])) if losses else None,
        "elapsed_s": float(state.get("elapsed", 0.0)),
        "windows_per_s": step * cfg.batch_size / state["elapsed"] if state.get("elapsed") else None,
        "last_checkpoint_at": ckpt.stat().st_mtime,
        "last_checkpoint_step": step,
        "updated_at": ckpt.stat().st_mtime,
    }


def _total_from_lr(step: int, lr: float | None, base: float | None, warmup: float) -> int | None:
    """The total steps whose schedule gives `lr` at `step`: exact after warm-up; during warm-up only the
    warm-up length is known, and the middle of the totals that share it is returned."""
    from spanqa.training.schedule import lr_factor

    if not lr or not base or step < 1:
        return None
    target = lr / base
    matches = []
    for total in range(step, 50 * step + 1000):
        if abs(lr_factor(step, total, warmup) - target) <= 1e-9 * max(1.0, target):
            matches.append(total)
        elif matches:
            break
    return matches[len(matches) // 2] if matches else None


def status(run: Path) -> dict[str, Any]:
    """Where the run in `run` stands, from its small files (and, for an old-format run, its checkpoint)."""
    from spanqa.training.config import read_config

    cfg = read_config(run / CONFIG_FILE)
    progress = read_progress(run)
    if progress is None:
        if not (run / CHECKPOINT_FILE).is_file():
            raise InputError(f"the run in {run} has not reached its first step yet (no progress.json)")
        progress = legacy_progress(run, cfg)
    now = time.time()
    info = dict(progress)
    info["run_dir"] = str(run)
    info["out"] = cfg.out
    if progress.get("state") == "running" and not (
        process_alive(progress.get("pid")) and now - progress.get("updated_at", 0) < 300
    ):
        info["state"] = "stopped"  # killed without a chance to say so; resumes from its last checkpoint
    remaining = None
    if info.get("windows_total") is not None:
        remaining = max(0, info["windows_total"] - info["windows_done"])
    rate = info.get("recent_windows_per_s") or info.get("windows_per_s")
    info["eta_s"] = remaining / rate if remaining is not None and rate else None
    ckpt = run / CHECKPOINT_FILE
    info["checkpoint_bytes"] = ckpt.stat().st_size if ckpt.is_file() else 0
    return info


def format_status(info: dict[str, Any]) -> str:
    now = time.time()
    approx = "≈" if info.get("windows_approximate") else ""
    state = info["state"]
    if state == "running":
        state += f" (pid {info.get('pid')}, updated {_ago(now - info['updated_at'])})"
    elif state == "checkpointed":
        state = "no live progress (a run started by an older spanqa: figures from its last checkpoint)"
    lines = [f"run: {info['run_dir']}  (model goes to {info['out']})", f"state: {state}"]
    total = info.get("total_steps")
    if total:
        pct = 100 * info["windows_done"] / info["windows_total"] if info.get("windows_total") else 0.0
        lines.append(
            f"step {info['step']:,} of {approx}{total:,}, windows {approx}{info['windows_done']:,} of "
            f"{approx}{info['windows_total']:,} ({pct:.1f}%)"
        )
    else:
        lines.append(f"step {info['step']:,} of an unknown total, windows {approx}{info['windows_done']:,}")
    if info.get("loss") is not None:
        lines.append(f"loss (mean of the last 50 steps): {info['loss']:.3f}")
    rate = info.get("recent_windows_per_s") or info.get("windows_per_s")
    eta = "unknown"
    if info.get("eta_s") is not None:
        eta = f"{_duration(info['eta_s'])} at {rate:.2f} windows/s"
    if state == "finished":
        eta = "done"
    lines.append(f"elapsed (training): {_duration(info.get('elapsed_s', 0.0))}; ETA: {eta}")
    if info.get("last_checkpoint_at"):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["last_checkpoint_at"]))
        lines.append(
            f"last checkpoint: {when} ({_ago(now - info['last_checkpoint_at'])}), step "
            f"{info.get('last_checkpoint_step', '?'):,}, {info['checkpoint_bytes'] / 2**20:.0f} MB"
        )
    else:
        lines.append("last checkpoint: none yet")
    if info.get("device"):
        note = f" ({info['precision_note']})" if info.get("precision_note") else ""
        lines.append(f"device: {info['device']}; precision {info.get('precision')}{note}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _ago(seconds: float) -> str:
    return f"{_duration(max(0.0, seconds))} ago"
