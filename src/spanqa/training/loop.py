"""Fine-tuning an encoder for span extraction, resumable, on the reader's own windowing."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
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
from spanqa.reading.windows import Windower, pad_batch
from spanqa.training.data import bucketed_batches, build_items, label_windows

log = logging.getLogger("spanqa.training.loop")

TOKENIZER_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
)


@dataclass
class TrainConfig:
    base: str
    train: list[str]
    out: str
    tune: str | None = None
    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 32
    max_seq_len: int = 256
    doc_stride: int = 96
    max_examples: int | None = None
    negatives: float = 0.0  # other-paragraph negatives per answerable question (SQuAD 1.1 files only)
    drop_negatives: float = 0.0  # answer-sentence-dropped negatives per answerable question
    perturb_negatives: float = 0.0  # perturbed-question negatives per answerable question
    null_weight: float = 1.0  # loss weight of windows labelled "no answer", relative to answer windows
    seed: int = 0
    warmup: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    checkpoint_minutes: float = 10.0
    save_dtype: str = "float32"
    dropout: float | None = 0.0  # None keeps the base's; 0 trains 1.5x faster on CPU (measured)
    threads: int | None = None


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train, checkpointing every few minutes; returns the finished model directory."""
    import torch
    from transformers import AutoModelForQuestionAnswering
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not cfg.null_weight > 0:
        raise InputError(f"--null-weight must be positive, got {cfg.null_weight}")
    out = Path(cfg.out)
    ckpt_file = out / "checkpoint.pt"
    if out.exists() and any(out.iterdir()) and not resume:
        raise InputError(f"{out} already exists and is not empty; use --resume to continue a run there")
    if resume and not ckpt_file.is_file():
        raise InputError(f"nothing to resume: {ckpt_file} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")

    base_dir = resolve_model(cfg.base)
    limit = max_positions(read_config(base_dir))
    if cfg.max_seq_len > limit:
        raise InputError(f"--max-seq-len {cfg.max_seq_len} is more than the base model's {limit} positions")
    tokenizer = load_tokenizer(base_dir)
    windower = Windower(tokenizer, cfg.max_seq_len, cfg.doc_stride)
    negatives = {"other": cfg.negatives, "drop": cfg.drop_negatives, "perturb": cfg.perturb_negatives}
    items, counts = build_items(cfg.train, negatives=negatives, max_examples=cfg.max_examples, seed=cfg.seed)
    if not items:
        raise InputError("no usable training examples in the given files")
    log.info("data: %s", json.dumps(asdict(counts)))
    windows, labels = label_windows(windower, items)
    lengths = windows.lengths()
    rng = np.random.default_rng(cfg.seed)
    n_epochs = max(1, math.ceil(cfg.epochs))
    schedule: list[np.ndarray] = []
    for _ in range(n_epochs):
        schedule += bucketed_batches(lengths, cfg.batch_size, rng)
    total_steps = max(1, round(len(schedule) * cfg.epochs / n_epochs))
    schedule = schedule[:total_steps]
    log.info(
        "%d windows from %d questions (%d answerable, %d with the answer in no window), %d steps",
        len(windows),
        counts.questions,
        counts.answerable,
        _lost_answers(windows.item, labels, items),
        total_steps,
    )

    model = AutoModelForQuestionAnswering.from_pretrained(
        str(base_dir), trust_remote_code=False, dtype=torch.float32, attn_implementation="eager"
    )
    _set_dropout(model, cfg.dropout)
    model.train()
    accepted = _accepted_inputs(model)
    pad_id, token_types = input_spec(model.config.to_dict())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    warmup = max(1, int(cfg.warmup * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    step, elapsed, losses = 0, 0.0, []
    if resume:
        state = torch.load(ckpt_file, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        step, elapsed, losses = state["step"], state["elapsed"], state["losses"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed at step %d of %d", step, total_steps)

    from tqdm import tqdm

    n_windows = sum(len(b) for b in schedule)
    done = sum(len(b) for b in schedule[:step])
    bar = tqdm(total=n_windows, initial=done, unit="win", desc="train", smoothing=0.05, mininterval=2.0)
    started, last_ckpt = time.time(), time.time()
    for s in range(step, total_steps):
        batch = pad_batch(windows, schedule[s], pad_id, token_types)
        inputs = {k: torch.from_numpy(v) for k, v in batch.items() if k in accepted}
        y = torch.from_numpy(labels[schedule[s]])
        outputs = model(**inputs)
        loss = window_loss(outputs.start_logits, outputs.end_logits, y, cfg.null_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.update(len(schedule[s]))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if time.time() - last_ckpt > cfg.checkpoint_minutes * 60 and s + 1 < total_steps:
            _save_checkpoint(ckpt_file, model, optim, sched, s + 1, elapsed + time.time() - started, losses)
            last_ckpt = time.time()
    bar.close()
    elapsed += time.time() - started

    _save_model(model, tokenizer, base_dir, out, cfg.save_dtype)
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
            "final_loss": float(np.mean(losses[-50:])) if losses else None,
            "wall_time_min": round(elapsed / 60, 1),
            "hyperparameters": {k: v for k, v in asdict(cfg).items() if k != "out"},
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "metrics": {},
    }
    write_card(out, card)
    ckpt_file.unlink(missing_ok=True)
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


def _lost_answers(item: list[int], labels: np.ndarray, items: list) -> int:
    """Answerable questions whose answer is split across windows in every window (never labelled)."""
    found = np.zeros(len(items), dtype=bool)
    for w, i in enumerate(item):
        if labels[w, 0] > 0:
            found[i] = True
    return int(sum(1 for i, it in enumerate(items) if it.span is not None and not found[i]))


DROPOUT_FIELDS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "hidden_dropout",
    "classifier_dropout",
)


def _set_dropout(model: Any, p: float | None) -> None:
    """Set every dropout of the model, and its config, to p (None leaves them as they are)."""
    import torch

    if p is None:
        return
    for name in DROPOUT_FIELDS:
        if isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, p)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    if hasattr(model.config, "attention_probs_dropout_prob"):
        model.config.attention_probs_dropout_prob = p


def _accepted_inputs(model: Any) -> set[str]:
    import inspect

    params = inspect.signature(model.forward).parameters
    return {n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params}


def _save_checkpoint(file: Path, model, optim, sched, step: int, elapsed: float, losses: list[float]) -> None:
    import torch

    state = {
        "model": model.state_dict(),
        "optim": optim.state_dict(),
        "sched": sched.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "losses": losses,
        "torch_rng": torch.get_rng_state(),
    }
    tmp = file.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, file)
    log.info("checkpoint at step %d", step)


def _save_model(model, tokenizer, base_dir: Path, out: Path, dtype: str) -> None:
    import torch

    if dtype not in ("float32", "float16"):
        raise InputError(f"save dtype must be float32 or float16, got {dtype}")
    model.eval()
    if dtype == "float16":
        model = model.to(torch.float16)
    model.save_pretrained(str(out))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(out / "tokenizer.json"))
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out / name)
