"""Fine-tuning an encoder for span extraction on the reader's own windowing, in runs that can stop at any
moment (a checkpoint every few minutes and on SIGTERM/SIGINT), resume on another day or machine, and be
extended with more epochs or more data (see schedule.py for what extending does to the order)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.backends.model_dir import (
    input_spec,
    load_tokenizer,
    max_positions,
    read_card,
    read_config,
    resolve_model,
    write_card,
)
from spanqa.errors import InputError
from spanqa.reading.windows import Windower, Windows, pad_batch
from spanqa.training import config as run_config
from spanqa.training.config import TrainConfig
from spanqa.training.data import build_items, label_windows
from spanqa.training.device import TIMING_WINDOWS, choose_precision, device_name, resolve_device
from spanqa.training.model_setup import accepted_inputs, save_model, set_dropout
from spanqa.training.progress import Progress, StopOnSignal, now_utc
from spanqa.training.run_dir import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    RUN_FILES,
    hold_lock,
    load_checkpoint,
    run_dir_for,
    save_checkpoint,
    write_json,
)
from spanqa.training.schedule import Plan, extend_plan, initial_plan, lr_factor

__all__ = ["TrainConfig", "train", "window_loss"]

log = logging.getLogger("spanqa.training.loop")


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train (or resume and possibly extend) the run of `cfg.out`; returns the finished model directory.

    Nothing is written before the options, the device, the data and the base model have been checked.
    """
    cfg.validate()
    out, run = Path(cfg.out), run_dir_for(cfg.out, cfg.checkpoint_dir)
    ckpt_file = run / CHECKPOINT_FILE
    _check_places(out, run, resume)
    log.info("run directory: %s (checkpoints every %g min and on stop)", run, cfg.checkpoint_minutes)
    import torch
    from transformers import AutoModelForQuestionAnswering
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    base_dir = resolve_model(cfg.base)
    limit = max_positions(read_config(base_dir))
    if cfg.max_seq_len > limit:
        raise InputError(f"--max-seq-len {cfg.max_seq_len} is more than the base model's {limit} positions")
    tokenizer = load_tokenizer(base_dir)
    windower = Windower(tokenizer, cfg.max_seq_len, cfg.doc_stride)
    log.info("reading %d training file(s)", len(cfg.train))
    items, counts = build_items(
        cfg.train, negatives=_negatives(cfg), max_examples=cfg.max_examples, seed=cfg.seed
    )
    if not items:
        raise InputError("no usable training examples in the given files")
    log.info("data: %s", json.dumps(asdict(counts)))
    windows, labels = _label_with_progress(windower, items)
    lengths = windows.lengths()

    state = load_checkpoint(ckpt_file) if resume else None
    if state is None:
        plan, step = initial_plan(lengths, cfg.batch_size, cfg.seed, cfg.epochs), 0
    else:
        step = int(state["step"])
        plan = _resumed_plan(state, run, windows, labels, lengths, cfg, windower)
        plan = extend_plan(plan, step, lengths, cfg.batch_size, cfg.seed, cfg.epochs)
        if step >= plan.total_steps and (out / "model.safetensors").is_file():
            raise InputError(
                f"the run in {run} has finished its {cfg.epochs:g} epoch(s) ({plan.total_steps} steps); "
                "raise --epochs (or add --train files and raise --epochs) to train more"
            )
    total_steps = plan.total_steps
    log.info(
        "%d windows from %d questions (%d answerable, %d with the answer in no window), %d steps",
        len(windows),
        counts.questions,
        counts.answerable,
        _lost_answers(windows.item, labels, items),
        total_steps,
    )

    log.info("loading %s", base_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(
        str(base_dir), trust_remote_code=False, dtype=torch.float32, attn_implementation="eager"
    )
    set_dropout(model, cfg.dropout)
    model.to(device)
    model.train()
    accepted = accepted_inputs(model)
    pad_id, token_types = input_spec(model.config.to_dict())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_factor(s, total_steps, cfg.warmup))
    elapsed, losses, sessions = 0.0, [], []
    if state is not None:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        # an extended run has more steps: the learning rate follows the longer schedule from here on
        for group in optim.param_groups:
            group["lr"] = group["initial_lr"] * lr_factor(sched.last_epoch, total_steps, cfg.warmup)
        sched._last_lr = [g["lr"] for g in optim.param_groups]
        elapsed, losses, sessions = state["elapsed"], state["losses"], state.get("sessions", [])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        log.info("resumed at step %d of %d", step, total_steps)
    else:
        torch.manual_seed(cfg.seed)

    def batch_inputs(rows: np.ndarray) -> tuple[dict[str, Any], Any]:
        batch = pad_batch(windows, rows, pad_id, token_types)
        inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.items() if k in accepted}
        return inputs, torch.from_numpy(labels[rows]).to(device)

    def autocast(bf16: bool):
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def time_pass(bf16: bool) -> float:
        """One forward and backward pass on the next batch's first windows; weights and RNG untouched."""
        rng_state = torch.get_rng_state()
        inputs, y = batch_inputs(plan.batches[min(step, len(plan.batches) - 1)][:TIMING_WINDOWS])
        started = time.perf_counter()
        with autocast(bf16):
            outputs = model(**inputs)
            loss = window_loss(outputs.start_logits.float(), outputs.end_logits.float(), y, cfg.null_weight)
        loss.backward()
        seconds = time.perf_counter() - started
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng_state)
        return seconds

    choice = {"precision": "fp32"}
    if step < total_steps:
        choice = choose_precision(cfg.precision, device, time_pass)
    bf16 = choice["precision"] == "bf16"
    where = device_name(device)
    log.info("device: %s; precision %s (%s)", where, choice["precision"], choice.get("reason", ""))
    session = {"started_at": now_utc(), "device": where, "from_step": step, "to_step": step, **choice}
    sessions = [*sessions, session]

    def checkpoint(at_step: int) -> None:
        session["to_step"] = at_step
        save_checkpoint(
            ckpt_file,
            {
                "format": CHECKPOINT_FORMAT,
                "model": model.state_dict(),
                "optim": optim.state_dict(),
                "sched": sched.state_dict(),
                "step": at_step,
                "elapsed": elapsed + time.time() - started,
                "losses": losses,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "plan": plan.to_state(),
                "data_fingerprint": fingerprint,
                "sessions": sessions,
            },
        )
        progress.checkpointed(at_step)
        log.info("checkpoint at step %d: %s", at_step, ckpt_file)

    fingerprint = _fingerprint(windows, labels, plan.n_windows)
    run.mkdir(parents=True, exist_ok=True)
    lock = hold_lock(run)  # noqa: F841 - held until train() returns
    started = time.time()
    on_disk = (ckpt_file.stat().st_mtime, step) if state is not None else None
    progress = Progress(run, plan, step, total_steps, elapsed, where, choice, on_disk)
    if state is not None and "plan" not in state:
        checkpoint(step)  # an old-format checkpoint, upgraded before its settings are replaced below
    write_json(run / CONFIG_FILE, asdict(cfg))  # only now: a run that failed to start leaves no config
    from tqdm import tqdm

    bar = tqdm(
        total=progress.windows_total, initial=progress.windows_done, unit="win", desc="train", mininterval=1.0
    )
    last_ckpt = time.time()
    with StopOnSignal() as stop:
        for s in range(step, total_steps):
            inputs, y = batch_inputs(plan.batches[s])
            with autocast(bf16):
                outputs = model(**inputs)
                start, end = outputs.start_logits.float(), outputs.end_logits.float()
                loss = window_loss(start, end, y, cfg.null_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            losses.append(loss.item())
            running = float(np.mean(losses[-50:]))
            bar.update(len(plan.batches[s]))
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            progress.stepped(s + 1, len(plan.batches[s]), running, elapsed + time.time() - started)
            if stop.signal is not None:
                bar.close()
                checkpoint(s + 1)
                progress.write("stopped", elapsed + time.time() - started)
                log.info(
                    "stopped by %s at step %d of %d; resume with: spanqa train --resume --out %s",
                    stop.signal, s + 1, total_steps, out,
                )  # fmt: skip
                raise KeyboardInterrupt
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60 and s + 1 < total_steps:
                checkpoint(s + 1)
                last_ckpt = time.time()
    bar.close()
    if cfg.keep_checkpoint:  # the finished run, kept so that it can be extended
        checkpoint(total_steps)
    elapsed += time.time() - started

    save_model(model, tokenizer, base_dir, out, cfg.save_dtype)
    card = read_card(base_dir) if (base_dir / "spanqa.json").is_file() else {}
    card = {
        "name": out.name,
        "base_model": str(cfg.base),
        "base_card": card.get("name") if card else None,
        "max_seq_len": cfg.max_seq_len,
        "doc_stride": cfg.doc_stride,
        "null_threshold": None,
        "calibration": None,
        "training": {
            "data": asdict(counts),
            "windows": len(windows),
            "steps": total_steps,
            "windows_trained": plan.windows_before(total_steps),
            "epoch_ends": plan.epoch_ends,
            "final_loss": float(np.mean(losses[-50:])) if losses else None,
            "wall_time_min": round(elapsed / 60, 1),
            "hyperparameters": {k: v for k, v in asdict(cfg).items() if k not in ("out", "checkpoint_dir")},
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "sessions": sessions,  # each start or resume: device, precision and its timings, steps
        },
        "metrics": {},
    }
    write_card(out, card)
    progress.write("finished", elapsed)
    if not cfg.keep_checkpoint:
        ckpt_file.unlink(missing_ok=True)
    else:
        log.info("final checkpoint kept for extending the run: %s (delete it when done)", ckpt_file)
    log.info("saved %s after %.1f min", out, elapsed / 60)
    if cfg.tune:
        from spanqa.evaluation.tuning import tune_model

        tune_model(out, cfg.tune)
    return out


def window_loss(start_logits, end_logits, labels, null_weight: float = 1.0):
    """Mean start/end cross-entropy over a batch; windows labelled CLS (no answer) weigh `null_weight`."""
    import torch

    ce = torch.nn.functional.cross_entropy
    per_window = (
        ce(start_logits, labels[:, 0], reduction="none") + ce(end_logits, labels[:, 1], reduction="none")
    ) / 2
    is_null = (labels[:, 0] == 0) & (labels[:, 1] == 0)
    weights = torch.where(is_null, null_weight, 1.0).to(per_window.dtype)
    return (weights * per_window).sum() / weights.sum()


def _check_places(out: Path, run: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; it must be a directory (new or empty)")
    if resume:
        if not (run / CHECKPOINT_FILE).is_file():
            raise InputError(f"nothing to resume: {run / CHECKPOINT_FILE} does not exist")
        return
    if (run / CHECKPOINT_FILE).is_file():
        raise InputError(
            f"a run for {out} already exists in {run}; use --resume to continue or extend it, "
            f"or delete {run} to start over"
        )
    # files an earlier attempt left without ever saving a step (a failed start) do not count
    if out.is_dir() and any(p.name not in RUN_FILES and not p.name.endswith(".tmp") for p in out.iterdir()):
        raise InputError(f"{out} already exists and is not empty; use --resume to continue a run there")


def _label_with_progress(windower: Windower, items: list, chunk: int = 4096) -> tuple[Windows, np.ndarray]:
    """label_windows over chunks of items, with a progress bar: the same windows in the same order, since
    each item is windowed on its own."""
    from tqdm import tqdm

    windows, labels = Windows(), []
    with tqdm(total=len(items), unit="question", desc="windows", mininterval=1.0) as bar:
        for start in range(0, len(items), chunk):
            part, part_labels = label_windows(windower, items[start : start + chunk])
            windows.ids += part.ids
            windows.type_ids += part.type_ids
            windows.offsets += part.offsets
            windows.item += [start + i for i in part.item]
            labels.append(part_labels)
            bar.update(min(chunk, len(items) - start))
    return windows, np.concatenate(labels)


def _negatives(cfg: TrainConfig) -> dict[str, float]:
    return {"other": cfg.negatives, "drop": cfg.drop_negatives, "perturb": cfg.perturb_negatives}


def _resumed_plan(state, run: Path, windows, labels, lengths, cfg: TrainConfig, windower) -> Plan:
    """The checkpoint's plan, checked against the data; an old-format checkpoint's plan rebuilt the way the
    run that wrote it planned (from its saved settings, on the windows of its own files)."""
    if "plan" in state:
        plan = Plan.from_state(state["plan"])
        if plan.n_windows > len(windows) or _fingerprint(windows, labels, plan.n_windows) != state.get(
            "data_fingerprint"
        ):
            raise InputError(
                f"the training data differ from the run's ({plan.n_windows} windows in {run}): give the "
                "files the run was started with (more may follow them), unchanged"
            )
        return plan
    saved = run_config.read_config(run / CONFIG_FILE)  # what the old run planned with
    n_old = len(windows)
    if list(saved.train) != list(cfg.train):
        old_items, _ = build_items(saved.train, negatives=_negatives(saved), seed=saved.seed)
        n_old = int(np.searchsorted(np.asarray(windows.item), len(old_items)))
    return initial_plan(lengths[:n_old], saved.batch_size, saved.seed, saved.epochs)


def _fingerprint(windows, labels: np.ndarray, n: int) -> str:
    """A hash of the first n windows' token ids and labels: resuming on other data is refused."""
    digest = hashlib.sha1()
    for w in range(n):
        digest.update(windows.ids[w].tobytes())
    digest.update(np.ascontiguousarray(labels[:n]).tobytes())
    return digest.hexdigest()


def _lost_answers(item: list[int], labels: np.ndarray, items: list) -> int:
    """Answerable questions whose answer is split across windows in every window (never labelled)."""
    found = np.zeros(len(items), dtype=bool)
    for w, i in enumerate(item):
        if labels[w, 0] > 0:
            found[i] = True
    return int(sum(1 for i, it in enumerate(items) if it.span is not None and not found[i]))
