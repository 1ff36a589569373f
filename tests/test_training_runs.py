"""Training runs that span days, on a tiny model: stop (SIGTERM) and resume, old-format checkpoints,
extending with epochs or data, `--status`, precision and device choice, and options refused before anything
is written."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from spanqa.backends.model_dir import read_card
from spanqa.training.data import bucketed_batches
from spanqa.training.schedule import extend_plan, initial_plan
from test_train_eval import FIXTURE, _config, _run  # one tiny training setup for both files

# The fields of train_config.json as runs started before run directories wrote it (the running v2 job's).
OLD_CONFIG_FIELDS = (
    "base train out tune epochs lr batch_size max_seq_len doc_stride max_examples negatives drop_negatives "
    "perturb_negatives null_weight seed warmup weight_decay max_grad_norm checkpoint_minutes save_dtype "
    "dropout threads"
).split()
OLD_CHECKPOINT_KEYS = ("model", "optim", "sched", "step", "elapsed", "losses", "torch_rng")


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    import torch

    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


def _stop_at(monkeypatch, step: int) -> None:
    """SIGTERM to this process right after `step` steps, as a scheduler or a shutdown would send it."""
    from spanqa.training.progress import Progress

    original = Progress.stepped

    def stepped(self, at_step, *rest):
        original(self, at_step, *rest)
        if at_step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Progress, "stepped", stepped)


@pytest.fixture(scope="module")
def whole(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (the finished checkpoint kept in its run directory)."""
    from spanqa.training.loop import train

    return train(_config(tiny_bert_dir, tmp_path_factory.mktemp("whole") / "model"))


def test_sigterm_checkpoints_outside_the_model_dir_and_resume_equals_an_uninterrupted_run(
    whole, tiny_bert_dir, tmp_path, monkeypatch, capsys
):
    from spanqa.training.loop import train
    from spanqa.training.run_dir import default_run_dir

    out = tmp_path / "model"
    with monkeypatch.context() as m:
        _stop_at(m, 3)
        with pytest.raises(KeyboardInterrupt):
            train(_config(tiny_bert_dir, out))
    run = default_run_dir(out)
    assert run.is_relative_to(Path(os.environ["SPANQA_CACHE"]))  # the user's cache, not the work tree
    assert (run / "checkpoint.pt").is_file() and not out.exists()
    assert not list(run.glob("*.tmp"))  # written atomically: no temporary file left behind
    progress = json.loads((run / "progress.json").read_text())
    assert progress["state"] == "stopped" and progress["step"] == 3

    rc, status, _ = _run(capsys, "train", "--status", str(out))
    assert rc == 0
    assert "step 3 of 12" in status and "stopped" in status and "last checkpoint" in status

    # the command line resumes with the saved configuration
    rc, printed, err = _run(capsys, "train", "--resume", "--out", str(out))
    assert rc == 0, err
    assert printed.strip() == str(out)
    _assert_same_weights(whole, out)
    card = read_card(out)
    assert card["training"]["steps"] == read_card(whole)["training"]["steps"] == 12
    assert [s["from_step"] for s in card["training"]["sessions"]] == [0, 3]
    rc, status, _ = _run(capsys, "train", "--status", str(out), "--json")
    info = json.loads(status)
    assert info["state"] == "finished" and info["step"] == info["total_steps"] == 12
    assert info["windows_done"] == info["windows_total"] == 2 * card["training"]["windows"]


def test_an_old_format_run_resumes_in_place(whole, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    """A run started by an older spanqa kept checkpoint.pt (7 keys) and train_config.json in --out."""
    import torch

    from spanqa.training.loop import train
    from spanqa.training.run_dir import default_run_dir

    staging = tmp_path / "staging"
    with monkeypatch.context() as m:
        _stop_at(m, 5)
        with pytest.raises(KeyboardInterrupt):
            train(_config(tiny_bert_dir, staging))
    state = torch.load(default_run_dir(staging) / "checkpoint.pt", weights_only=False)
    old = tmp_path / "old-run"
    old.mkdir()
    torch.save({k: state[k] for k in OLD_CHECKPOINT_KEYS}, old / "checkpoint.pt")
    cfg = json.loads((default_run_dir(staging) / "train_config.json").read_text())
    cfg["out"] = str(old)
    (old / "train_config.json").write_text(json.dumps({k: cfg[k] for k in OLD_CONFIG_FIELDS}))

    rc, status, _ = _run(capsys, "train", "--status", str(old))
    assert rc == 0 and "step 5 of ≈12" in status and "older spanqa" in status

    rc, _, err = _run(capsys, "train", "--resume", "--out", str(old))
    assert rc == 0, err
    _assert_same_weights(whole, old)
    assert torch.load(old / "checkpoint.pt", weights_only=False)["format"] == 2  # upgraded in place


def _second_file(tmp_path: Path) -> Path:
    """More SQuAD data: the fixture's questions reworded (so they window differently)."""
    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for article in doc["data"]:
        for par in article["paragraphs"]:
            for qa in par["qas"]:
                qa["id"] = f"more-{qa['id']}"
                qa["question"] = "Tell me: " + qa["question"]
    path = tmp_path / "more.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_a_run_is_extended_with_data_and_epochs(whole, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    from spanqa.training.loop import train

    out = tmp_path / "model"
    with monkeypatch.context() as m:
        _stop_at(m, 4)
        with pytest.raises(KeyboardInterrupt):
            train(_config(tiny_bert_dir, out, epochs=1))
    more = _second_file(tmp_path)
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out), "--train", str(FIXTURE), str(more))
    assert rc == 0, err
    card = read_card(out)["training"]
    assert card["windows"] > read_card(whole)["training"]["windows"]
    assert card["windows_trained"] == card["windows"]  # the epoch in progress took the new windows in
    assert card["hyperparameters"]["train"] == [str(FIXTURE), str(more)]

    # a finished run: resuming it as it is says so; raising --epochs extends it
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out))
    assert rc == 2 and "finished" in err and "--epochs" in err
    (out / "model.safetensors").unlink()  # the model is rewritten by the extension
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out), "--epochs", "2.5")
    assert rc == 0, err
    card = read_card(out)["training"]
    assert card["windows_trained"] > 2 * card["windows"]
    assert [s["from_step"] for s in card["sessions"]] == [0, 4, card["sessions"][1]["to_step"]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "5e-4"], "--lr cannot change when resuming"),
        (["--train", "other.json"], "must list the run's files first"),
        (["--batch-size", "8"], "--batch-size cannot change"),
    ],
)
def test_resume_refuses_changes_that_are_not_an_extension(
    whole, tiny_bert_dir, tmp_path, monkeypatch, capsys, argv, message
):
    from spanqa.training.loop import train

    out = tmp_path / "model"
    with monkeypatch.context() as m:
        _stop_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            train(_config(tiny_bert_dir, out))
    capsys.readouterr()
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out), *argv)
    assert rc == 2 and message in err and err.count("\n") == 1


def test_a_run_is_shortened_but_not_past_its_step(whole, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    from spanqa.training.loop import train

    out = tmp_path / "model"
    with monkeypatch.context() as m:
        _stop_at(m, 4)
        with pytest.raises(KeyboardInterrupt):
            train(_config(tiny_bert_dir, out))  # 2 epochs
    capsys.readouterr()
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out), "--epochs", "0.1")
    assert rc == 2 and err.splitlines()[-1].endswith("lower --epochs less (or keep the model as it is)")
    assert "would end the run at step" in err and "Traceback" not in err
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out), "--epochs", "1.5")
    assert rc == 0, err
    card = read_card(out)["training"]
    full = read_card(whole)["training"]  # the same data and settings, 2 epochs uninterrupted
    assert card["hyperparameters"]["epochs"] == 1.5
    assert card["steps"] == round(full["steps"] * 1.5 / 2) < full["steps"]


def test_a_run_being_trained_cannot_be_resumed_twice(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    from spanqa.training.loop import train
    from spanqa.training.run_dir import default_run_dir, hold_lock

    out = tmp_path / "model"
    with monkeypatch.context() as m:
        _stop_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            train(_config(tiny_bert_dir, out))
    before = (default_run_dir(out) / "checkpoint.pt").read_bytes()
    lock = hold_lock(default_run_dir(out))  # as another process training it would
    capsys.readouterr()
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out))
    last = err.strip().split("\n")[-1]
    assert rc == 2 and last.startswith("spanqa: error:") and "being trained by another process" in last
    assert (default_run_dir(out) / "checkpoint.pt").read_bytes() == before
    lock.close()
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out))
    assert rc == 0, err


def test_resuming_on_changed_data_is_refused(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    from spanqa.training.loop import train

    data = tmp_path / "data.json"
    data.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "model"
    with monkeypatch.context() as m:
        _stop_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            train(_config(tiny_bert_dir, out, train=[str(data)]))
    data.write_text(_second_file(tmp_path).read_text(encoding="utf-8"), encoding="utf-8")
    capsys.readouterr()
    rc, _, err = _run(capsys, "train", "--resume", "--out", str(out))
    last = err.strip().split("\n")[-1]  # after the windowing progress bar
    assert rc == 2 and last.startswith("spanqa: error: the training data differ")


# --- the plan: which windows each step trains ---


def _legacy_schedule(lengths, batch_size, seed, epochs):
    """How runs before stored plans ordered their batches (the running v2 job resumes on this)."""
    rng = np.random.default_rng(seed)
    n_epochs = max(1, math.ceil(epochs))
    schedule = []
    for _ in range(n_epochs):
        schedule += bucketed_batches(lengths, batch_size, rng)
    return schedule[: max(1, round(len(schedule) * epochs / n_epochs))]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("epochs", [1.0, 0.4, 2.5])
def test_the_plan_is_the_order_runs_always_had(epochs):
    lengths = np.random.default_rng(7).integers(20, 256, size=1000)
    plan = initial_plan(lengths, 32, 2, epochs)
    assert _same(plan.batches[: plan.total_steps], _legacy_schedule(lengths, 32, 2, epochs))


def test_raising_epochs_gives_the_order_of_a_run_started_with_more():
    lengths = np.random.default_rng(7).integers(20, 256, size=500)
    plan = initial_plan(lengths, 16, 3, 1.5)
    longer = extend_plan(plan, 10, lengths, 16, 3, 3)
    assert _same(longer.batches, initial_plan(lengths, 16, 3, 3).batches)
    assert longer.total_steps == initial_plan(lengths, 16, 3, 3).total_steps


def test_lowering_epochs_ends_the_run_sooner_in_the_same_order():
    lengths = np.random.default_rng(7).integers(20, 256, size=500)
    plan = initial_plan(lengths, 16, 3, 2)
    shorter = extend_plan(plan, 10, lengths, 16, 3, 1.5)
    assert shorter.total_steps == initial_plan(lengths, 16, 3, 1.5).total_steps < plan.total_steps
    assert _same(shorter.batches[: shorter.total_steps], plan.batches[: shorter.total_steps])
    # raised again later: the order a run started with the higher count has
    assert _same(extend_plan(shorter, 20, lengths, 16, 3, 3).batches, initial_plan(lengths, 16, 3, 3).batches)
    with pytest.raises(Exception, match="would end the run at step"):
        extend_plan(plan, shorter.total_steps, lengths, 16, 3, 1.5)
    with pytest.raises(Exception, match="while adding data"):
        extend_plan(plan, 10, np.concatenate([lengths, lengths[:20]]), 16, 3, 1.5)


def test_appended_windows_join_the_epoch_in_progress_and_every_later_epoch():
    rng = np.random.default_rng(7)
    old, new = rng.integers(20, 256, size=400), rng.integers(20, 256, size=150)
    lengths = np.concatenate([old, new])
    plan = initial_plan(old, 16, 3, 2)
    step = plan.epoch_ends[0] + 5  # in the second epoch
    grown = extend_plan(plan, step, lengths, 16, 3, 3)
    assert _same(grown.batches[:step], plan.batches[:step])  # steps taken never change
    assert _same(grown.batches, extend_plan(plan, step, lengths, 16, 3, 3).batches)  # deterministic
    starts = [0, *grown.epoch_ends[:-1]]
    epochs = [np.sort(np.concatenate(grown.batches[a:b])) for a, b in zip(starts, grown.epoch_ends)]
    assert np.array_equal(epochs[0], np.arange(400))  # the finished epoch had the old windows
    for windows in epochs[1:]:  # the one in progress and the new one: every window once
        assert np.array_equal(windows, np.arange(550))
    assert grown.total_steps == grown.epoch_ends[2]
    with pytest.raises(Exception, match="can only be added"):
        extend_plan(grown, step, old, 16, 3, 3)


def test_data_added_to_a_finished_run_waits_for_more_epochs():
    rng = np.random.default_rng(7)
    old, new = rng.integers(20, 256, size=300), rng.integers(20, 256, size=100)
    plan = initial_plan(old, 16, 3, 1)
    done = plan.total_steps
    same_epochs = extend_plan(plan, done, np.concatenate([old, new]), 16, 3, 1)
    assert same_epochs.total_steps == done
    more = extend_plan(plan, done, np.concatenate([old, new]), 16, 3, 2)
    assert np.array_equal(np.sort(np.concatenate(more.batches[done:])), np.arange(400))


# --- options, device and precision: refused before anything is written ---


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--batch-size", "0"], "--batch-size must be a whole number of at least 1"),
        (["--epochs", "0"], "--epochs must be a positive number"),
        (["--epochs", "-1"], "--epochs must be a positive number"),
        (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
        (["--checkpoint-minutes", "-5"], "--checkpoint-minutes must be 0 or more"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(tiny_bert_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "model"
    base = ["train", "--base", str(tiny_bert_dir), "--train", str(FIXTURE), "--out", str(out)]
    rc, _, err = _run(capsys, *base, *argv)
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not out.exists() and not (Path(os.environ["SPANQA_CACHE"]) / "train" / "model").exists()


def test_cuda_asked_for_without_cuda_is_one_line(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "model"
    argv = ["train", "--base", str(tiny_bert_dir), "--train", str(FIXTURE), "--out", str(out)]
    rc, _, err = _run(capsys, *argv, "--device", "cuda")
    assert rc == 2 and "--device cuda:" in err and "--device cpu" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_cuda_device_that_does_not_exist_is_one_line(monkeypatch):
    import torch

    from spanqa.errors import InputError
    from spanqa.training.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match="only 1 CUDA device"):
        resolve_device("cuda:3")
    assert resolve_device("cuda").type == "cuda"  # no GPU is touched to name one
    assert resolve_device("cpu").type == "cpu"


def test_a_failed_start_does_not_block_the_corrected_run(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "model"
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": "not a list"}', encoding="utf-8")
    argv = ["train", "--base", str(tiny_bert_dir), "--out", str(out), "--epochs", "0.2", "--batch-size", "4"]
    argv += ["--max-seq-len", "64", "--doc-stride", "16", "--precision", "fp32"]
    rc, _, err = _run(capsys, *argv, "--train", str(bad))
    assert rc == 2 and "not SQuAD format" in err
    # an older spanqa's failed start left its train_config.json in --out: that does not block either
    out.mkdir()
    (out / "train_config.json").write_text("{}", encoding="utf-8")
    rc, _, err = _run(capsys, *argv, "--train", str(FIXTURE))
    assert rc == 0, err
    assert (out / "model.safetensors").is_file()
    rc, _, err = _run(capsys, *argv, "--train", str(FIXTURE))  # a second run on a finished one is refused
    assert rc == 2 and "already exists" in err and "--resume" in err


def test_precision_is_chosen_by_timing():
    import torch

    from spanqa.training.device import choose_precision

    cpu = torch.device("cpu")
    calls: list[bool] = []

    def timer(seconds: dict[bool, float]):
        def time_pass(bf16: bool) -> float:
            calls.append(bf16)
            return seconds[bf16]

        return time_pass

    assert choose_precision("auto", cpu, timer({False: 1.0, True: 0.7}))["precision"] == "bf16"
    assert calls == [False, True, False, True]  # a warm-up each, then one timed pass each
    calls.clear()
    slow = choose_precision("auto", cpu, timer({False: 1.0, True: 1.2}))
    assert slow["precision"] == "fp32" and slow["timings_s"] == {"fp32": 1.0, "bf16": 1.2}
    calls.clear()
    close = choose_precision("auto", cpu, timer({False: 1.0, True: 1.05}))
    assert close["precision"] == "fp32" and len(calls) == 6  # too close: timed again
    calls.clear()
    far_slower = choose_precision("auto", cpu, timer({False: 1.0, True: 9.0}))
    assert far_slower["precision"] == "fp32" and len(calls) == 2  # decided by the warm-up alone
    assert choose_precision("bf16", cpu, timer({}))["precision"] == "bf16"  # asked for: not timed


def test_the_card_records_the_precision_measured(whole):
    (session,) = read_card(whole)["training"]["sessions"]
    assert session["precision"] == "fp32" and session["device"].startswith("cpu")
    assert session["from_step"] == 0 and session["to_step"] == 12


def test_auto_precision_times_both_and_records_them(tiny_bert_dir, tmp_path):
    from spanqa.training.loop import train

    out = train(_config(tiny_bert_dir, tmp_path / "m", precision="auto", epochs=0.2, keep_checkpoint=False))
    (session,) = read_card(out)["training"]["sessions"]
    assert set(session["timings_s"]) == {"fp32", "bf16"}
    assert session["precision"] == min(session["timings_s"], key=session["timings_s"].get)


def test_a_checkpoint_write_that_fails_leaves_the_previous_one(tmp_path, monkeypatch):
    from spanqa.training import run_dir

    file = tmp_path / "checkpoint.pt"
    run_dir.save_checkpoint(file, {"step": 1})

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(run_dir.os, "replace", fail)
    with pytest.raises(OSError):
        run_dir.save_checkpoint(file, {"step": 2})
    assert run_dir.load_checkpoint(file)["step"] == 1


def test_windowing_in_chunks_gives_the_same_windows_and_labels(tiny_bert_dir):
    from spanqa.backends.model_dir import load_tokenizer
    from spanqa.reading.windows import Windower
    from spanqa.training.data import build_items, label_windows
    from spanqa.training.loop import _label_with_progress

    windower = Windower(load_tokenizer(tiny_bert_dir), 64, 16)
    items, _ = build_items([str(FIXTURE)], negatives={"perturb": 1.0}, seed=1)
    windows, labels = label_windows(windower, items)
    chunked, chunked_labels = _label_with_progress(windower, items, chunk=3)
    assert len(windows) > len(items) and np.array_equal(labels, chunked_labels)
    assert windows.item == chunked.item
    for name in ("ids", "type_ids", "offsets"):
        assert all(np.array_equal(a, b) for a, b in zip(getattr(windows, name), getattr(chunked, name)))
