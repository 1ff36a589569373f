"""The order in which a run trains its windows, and how that order grows when a run is extended.

A plan is whole epochs of length-bucketed random batches (`data.bucketed_batches`), drawn one epoch after
another from one random generator seeded with the run's seed, exactly as runs were always planned; a
fractional `--epochs` cuts the last epoch short (`total_steps`). Extending or shortening a run never
changes a step already taken:
- raising `--epochs` draws further epochs from the same generator, so the order is the one a run started
  with the higher count would have had;
- lowering `--epochs` keeps the order and ends the run sooner, at a step it has not reached yet;
- appending data (windows numbered after the old ones) finishes the epoch in progress on its untrained
  windows plus all the new ones, in a fresh random order (seeded by seed, step and window count), and every
  later epoch covers all windows, old and new. A run whose epochs are all done trains the new windows only
  in the epochs `--epochs` adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from spanqa.errors import InputError
from spanqa.training.data import bucketed_batches


@dataclass
class Plan:
    batches: list[np.ndarray]  # window indices of every planned batch, in training order
    epoch_ends: list[int]  # number of batches up to the end of each planned epoch (whole epochs)
    n_windows: int  # windows the plan covers: 0 .. n_windows-1
    epochs: float
    rng_state: dict[str, Any]  # the generator after the last planned epoch: further epochs continue it

    @property
    def total_steps(self) -> int:
        """Steps of the run: whole epochs, the last one cut to the fraction `epochs` asks for."""
        k = max(1, math.ceil(self.epochs))
        sizes = np.diff([0, *self.epoch_ends[:k]])
        if len(set(sizes.tolist())) == 1:  # equal epochs: the formula runs have always used
            return max(1, round(self.epoch_ends[k - 1] * self.epochs / k))
        before = self.epoch_ends[k - 2] if k >= 2 else 0
        return max(1, before + round(int(sizes[-1]) * (self.epochs - (k - 1))))

    def windows_before(self, step: int) -> int:
        return int(sum(len(b) for b in self.batches[:step]))

    def to_state(self) -> dict[str, Any]:
        flat = np.concatenate(self.batches) if self.batches else np.zeros(0, dtype=np.int64)
        return {
            "order": flat.astype(np.int32),
            "batch_sizes": np.array([len(b) for b in self.batches], dtype=np.int32),
            "epoch_ends": list(self.epoch_ends),
            "n_windows": self.n_windows,
            "epochs": self.epochs,
            "rng_state": self.rng_state,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Plan:
        cuts = np.cumsum(state["batch_sizes"])[:-1]
        batches = [b.astype(np.int64) for b in np.split(state["order"], cuts)]
        ends, rng_state = list(state["epoch_ends"]), state["rng_state"]
        return cls(batches, ends, state["n_windows"], state["epochs"], rng_state)


def initial_plan(lengths: np.ndarray, batch_size: int, seed: int, epochs: float) -> Plan:
    """The plan of a new run (and of a run whose checkpoint predates stored plans: the same order)."""
    rng = np.random.default_rng(seed)
    plan = Plan([], [], len(lengths), epochs, {})
    _add_epochs(plan, lengths, batch_size, rng)
    return plan


def extend_plan(
    plan: Plan, step: int, lengths: np.ndarray, batch_size: int, seed: int, epochs: float
) -> Plan:
    """The plan with more epochs and/or the windows from `plan.n_windows` on, the first `step` batches kept.

    Deterministic, so that a run stopped again before its next checkpoint extends the same way.
    """
    n = len(lengths)
    if n < plan.n_windows:
        raise InputError(
            f"the run had {plan.n_windows} windows and the data now give {n}: data can only be added"
        )
    if epochs < plan.epochs:
        return _shortened(plan, step, n, epochs)
    if n == plan.n_windows:
        rng = np.random.default_rng()
        rng.bit_generator.state = plan.rng_state
        longer = Plan(list(plan.batches), list(plan.epoch_ends), n, epochs, plan.rng_state)
        _add_epochs(longer, lengths, batch_size, rng)
        return longer
    rng = np.random.default_rng([seed, step, n])
    ends = plan.epoch_ends
    # the epoch in progress: the first whose batches are not all trained or not all planned to be
    in_progress = next((e for e, end in enumerate(ends) if end > step), None)
    batches = list(plan.batches[:step])
    epoch_ends = list(ends)
    if in_progress is not None:
        untrained = plan.batches[step : ends[in_progress]]
        rest = np.concatenate([*untrained, np.arange(plan.n_windows, n)])
        batches += [rest[b] for b in bucketed_batches(lengths[rest], batch_size, rng)]
        epoch_ends = [*ends[:in_progress], len(batches)]
    grown = Plan(batches, epoch_ends, n, epochs, {})
    _add_epochs(grown, lengths, batch_size, rng)
    return grown


def _shortened(plan: Plan, step: int, n_windows: int, epochs: float) -> Plan:
    """The plan cut to fewer epochs: the order is unchanged, the run ends sooner (and its learning rate,
    which decays to 0 at the last step, decays faster from here on)."""
    if n_windows != plan.n_windows:
        raise InputError("--epochs cannot be lowered while adding data: add the data, then shorten the run")
    shorter = Plan(plan.batches, plan.epoch_ends, plan.n_windows, epochs, plan.rng_state)
    if shorter.total_steps <= step:
        raise InputError(
            f"--epochs {epochs:g} would end the run at step {shorter.total_steps:,}, and it has trained "
            f"{step:,} steps already: lower --epochs less (or keep the model as it is)"
        )
    return shorter


def _add_epochs(plan: Plan, lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
    while len(plan.epoch_ends) < max(1, math.ceil(plan.epochs)):
        plan.batches += bucketed_batches(lengths, batch_size, rng)
        plan.epoch_ends.append(len(plan.batches))
    plan.rng_state = rng.bit_generator.state


def lr_factor(step: int, total_steps: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` share of the steps, then linear decay to 0 at the last."""
    warm = max(1, int(warmup * total_steps))
    return min((step + 1) / warm, max(0.0, (total_steps - step) / max(1, total_steps - warm)))
