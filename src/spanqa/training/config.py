"""A training run's settings: checked before anything is written, saved with the run, changed on resume
only in the ways that extend it."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spanqa.errors import InputError

DEVICES = ("cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


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
    # Fields added after the first runs were started: a train_config.json without them reads as these.
    device: str = "cpu"  # "cuda" (or "cuda:N") trains on a GPU; checkpoints load on either
    precision: str = "auto"  # auto: bf16 autocast where a timing at start measures it faster (always on CUDA)
    checkpoint_dir: str | None = None  # None: <cache>/train/<out name>-<hash of out's path>
    keep_checkpoint: bool = True  # keep the final checkpoint, so the finished run can be extended

    def validate(self) -> None:
        """One InputError naming the first bad option, before a file is read or written."""
        _positive("--lr", self.lr)
        _positive("--epochs", self.epochs)
        _positive("--null-weight", self.null_weight)
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"--batch-size must be a whole number of at least 1, got {self.batch_size}")
        if self.max_seq_len < 8:
            raise InputError(f"--max-seq-len must be at least 8 tokens, got {self.max_seq_len}")
        if self.doc_stride < 0:
            raise InputError(f"--doc-stride must be 0 or more tokens, got {self.doc_stride}")
        if self.max_examples is not None and self.max_examples < 1:
            raise InputError(f"--max-examples must be at least 1, got {self.max_examples}")
        for name, rate in (
            ("--negatives", self.negatives),
            ("--drop-negatives", self.drop_negatives),
            ("--perturb-negatives", self.perturb_negatives),
            ("--checkpoint-minutes", self.checkpoint_minutes),
        ):
            if not (math.isfinite(rate) and rate >= 0):
                raise InputError(f"{name} must be 0 or more, got {rate}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise InputError(f"--dropout must be in [0, 1) (or -1 to keep the base's), got {self.dropout}")
        if not 0 <= self.warmup < 1:
            raise InputError(f"warmup must be a share of the steps in [0, 1), got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if self.save_dtype not in ("float32", "float16"):
            raise InputError(f"--save-dtype must be float32 or float16, got {self.save_dtype}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision}")
        if self.device.split(":")[0] not in DEVICES:
            raise InputError(f"--device must be cpu, cuda or cuda:N, got {self.device}")
        if not self.train:
            raise InputError("--train needs at least one SQuAD-format file")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive number, got {value}")


# What `--resume` may change: where and how the run goes on, how long, and on how much data.
# Everything else decides the data, labels, order or optimisation of the steps already taken.
CHANGEABLE_ON_RESUME = (
    "out",
    "tune",
    "checkpoint_minutes",
    "save_dtype",
    "threads",
    "device",
    "precision",
    "checkpoint_dir",
    "keep_checkpoint",
)


def read_config(file: Path) -> TrainConfig:
    """A saved train_config.json; fields added since it was written take their defaults."""
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {file}: {e}") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in saved.items() if k in known})


def config_json(cfg: TrainConfig) -> str:
    return json.dumps(asdict(cfg), indent=2)


def merge_for_resume(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The saved run's settings with the options given on `--resume`, refusing changes that are not an
    extension or a shortening: --epochs may change (schedule.extend_plan refuses an end already passed), and
    --train may only add files after the run's own."""
    changes: dict[str, Any] = {}
    for name, value in given.items():
        old = getattr(saved, name)
        if value is None or value == old:
            continue
        option = "--" + name.replace("_", "-")
        if name == "epochs":
            pass  # raised: more epochs; lowered: schedule.extend_plan checks the new end is still ahead
        elif name == "train":
            if list(value[: len(old)]) != list(old) or len(value) == len(old):
                raise InputError(
                    "--train on --resume must list the run's files first, in the same order "
                    f"({' '.join(old)}), then the files to add"
                )
            if saved.max_examples is not None:
                raise InputError("a run sampled with --max-examples cannot take more data; start a new run")
        elif name not in CHANGEABLE_ON_RESUME:
            raise InputError(
                f"{option} cannot change when resuming: the run uses {old!r}; start a new run (another "
                "--out) to change it"
            )
        changes[name] = value
    cfg = dataclasses.replace(saved, **changes)
    cfg.validate()
    return cfg
