"""End to end on a tiny model: train -> evaluate -> tune, the reader using what tuning stored (stopping,
resuming and extending runs: test_training_runs.py)."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest

from spanqa.backends.model_dir import read_card
from spanqa.cli.main import main
from spanqa.evaluation.metrics import squad_v2_eval
from spanqa.evaluation.squad import load_squad
from spanqa.reading.calibration import Calibration
from test_metrics import OFFICIAL_KEYS

FIXTURE = Path(__file__).parent / "fixtures" / "eval_squad_tiny.json"


def _config(base: Path, out: Path, **changes):
    from spanqa.training.loop import TrainConfig

    settings = dict(
        base=str(base),
        train=[str(FIXTURE)],
        out=str(out),
        epochs=2,
        lr=1e-3,
        batch_size=4,
        max_seq_len=64,
        doc_stride=16,
        save_dtype="float32",
        checkpoint_minutes=0.0,  # a checkpoint after every step
        threads=1,
        precision="fp32",
    )
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained on the fixture and tuned on it by `train --tune`."""
    from spanqa.training.loop import train

    out = tmp_path_factory.mktemp("trained") / "model"
    return train(_config(tiny_bert_dir, out, tune=str(FIXTURE)))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_train_with_tune_stores_both_calibrations_and_warns_of_a_small_set(trained: Path):
    card = read_card(trained)
    assert isinstance(card["null_threshold"], float) and math.isfinite(card["null_threshold"])
    assert card["calibration"]["method"] == "platt"
    assert card["answerable_calibration"]["method"] == "platt"
    examples = load_squad(FIXTURE)
    share = sum(bool(ex.answers) for ex in examples) / len(examples)
    assert card["answerable_calibration"]["tuning_prior"] == pytest.approx(share)
    assert card["answerable_prior"] == pytest.approx(share)  # no prior given: the tuning set's
    assert Calibration.from_card(card).calibrated
    tuning = card["tuning"]
    assert tuning["data"] == FIXTURE.name
    assert tuning["questions"] == len(examples)
    assert "too small" in tuning["warning"]  # 14 questions: tuned, but loudly marked as such
    assert 0 <= tuning["span_ece_before"] <= 1 and 0 <= tuning["span_ece_after"] <= 1
    assert set(OFFICIAL_KEYS) <= set(tuning["metrics"])
    assert not (trained / "plots").exists()  # plots only where --plots names


def test_evaluate_json_and_official_files(trained: Path, tmp_path: Path, capsys):
    preds_file, na_file = tmp_path / "pred.json", tmp_path / "na.json"
    rc, out, _ = _run(
        capsys,
        "evaluate",
        "--model",
        str(trained),
        "--data",
        str(FIXTURE),
        "--predictions-out",
        str(preds_file),
        "--na-probs-out",
        str(na_file),
        "--json",
    )
    assert rc == 0
    metrics = json.loads(out)
    assert list(metrics) == [
        *OFFICIAL_KEYS,
        "HasAns_auc",
        "span_ece",
        "answerable_ece",
        "f1_by_prior",
        "answerable_prior",
    ]
    examples = load_squad(FIXTURE)
    preds = json.loads(preds_file.read_text(encoding="utf-8"))
    na = json.loads(na_file.read_text(encoding="utf-8"))
    assert set(preds) == set(na) == {ex.id for ex in examples}
    assert all(isinstance(v, str) for v in preds.values())
    assert all(0.0 <= v <= 1.0 for v in na.values())
    assert metrics["answerable_prior"] == read_card(trained)["answerable_prior"]
    # the printed metrics are what the official script computes from the written files
    golds = {ex.id: [a.text for a in ex.answers] for ex in examples}
    assert squad_v2_eval(golds, preds, na) == {k: metrics[k] for k in OFFICIAL_KEYS}
    # every non-empty prediction is a span of its context
    for ex in examples:
        assert preds[ex.id] in ex.context
    # the decision is answerable < 0.5 at the card's prior, as the reader takes it
    from spanqa import Reader

    reader = Reader.load(trained, threads=1)
    for ex, pred in zip(examples, reader.answer_batch([(ex.question, ex.context) for ex in examples])):
        assert pred.no_answer == (pred.answerable < 0.5 or not pred.answers)
        assert (preds[ex.id] == "") == (pred.no_answer or not pred.answers)
        assert na[ex.id] == pytest.approx(1.0 - pred.answerable)


def test_evaluate_tune_updates_the_card_and_the_reader_uses_it(trained: Path, tmp_path: Path, capsys):
    from spanqa import Reader

    model = tmp_path / "model"
    shutil.copytree(trained, model)
    card = read_card(model)
    for key in ("null_threshold", "calibration", "answerable_calibration", "answerable_prior", "tuning"):
        card[key] = None  # forget the tuning
    (model / "spanqa.json").write_text(json.dumps(card), encoding="utf-8")
    rc, out, _ = _run(capsys, "evaluate", "--model", str(model), "--data", str(FIXTURE), "--limit", "12")
    assert rc == 0 and "f1" in out
    argv = ["evaluate", "--model", str(model), "--data", str(FIXTURE), "--limit", "12", "--tune"]
    rc, out, err = _run(capsys, *argv)  # 12 questions: too few to calibrate on, refused ...
    assert rc == 2 and out == "" and "too small" in err and err.count("\n") == 1
    assert read_card(model)["calibration"] is None
    argv += ["--force", "--answerable-prior", "0.7", "--plots", str(tmp_path / "plots"), "--json"]
    rc, out, err = _run(capsys, *argv)  # ... unless forced, with a warning
    assert rc == 0 and "WARNING" in err and "too small" in err
    tuned = json.loads(out)
    card = read_card(model)
    assert card["tuning"]["questions"] == 12 and card["answerable_prior"] == 0.7
    assert tuned == {**card["tuning"]["metrics"], "answerable_prior": 0.7}
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "tuning_f1_by_prior.png",
        "tuning_reliability.png",
    ]
    examples = load_squad(FIXTURE)[:12]
    reader = Reader.load(model, threads=1)
    calibration = Calibration.from_card(card)
    assert reader.calibration == calibration and calibration.calibrated
    assert reader.null_threshold == card["null_threshold"] and reader.answerable_prior == 0.7
    items = [(ex.question, ex.context) for ex in examples]
    golds = {ex.id: [a.text for a in ex.answers] for ex in examples}
    preds = reader.answer_batch(items)
    # the stored raw threshold is the best one for callers who set raw thresholds
    best = _f1_at(golds, examples, preds, card["null_threshold"])
    assert best == pytest.approx(card["tuning"]["best_f1_raw_threshold"])
    for t in [-math.inf, math.inf] + [p.null_score_diff for p in preds]:
        assert _f1_at(golds, examples, preds, t) <= best + 1e-9
    # the decision is answerable < 0.5 at the card's prior, and gives the F1 tuning reported
    decided = {
        ex.id: "" if p.no_answer or not p.answers else p.answers[0].text for ex, p in zip(examples, preds)
    }
    assert squad_v2_eval(golds, decided)["f1"] == pytest.approx(tuned["f1"])
    for p in preds:
        assert p.answerable_prior == 0.7 and p.no_answer == (p.answerable < 0.5 or not p.answers)
        if p.answers:  # scores and probabilities are the stored calibrations of the raw features
            assert p.answers[0].score == pytest.approx(calibration.span_score(p.features), rel=1e-9)
            assert p.answerable == pytest.approx(calibration.answerable_prob(p.features, 0.7), rel=1e-9)
    raw = reader.answer_batch(items, calibrated=False)
    assert reader.calibration == calibration  # asking for raw scores changes nothing
    assert [r.answers[0].score for r in raw] != [p.answers[0].score for p in preds]


def test_tuning_names_its_target_and_needs_matplotlib_only_for_plots(trained, tmp_path, monkeypatch, capsys):
    from spanqa.backends.model_dir import DEFAULT_MODEL_DIR

    shipped = (DEFAULT_MODEL_DIR / "spanqa.json").read_bytes()
    rc, out, err = _run(capsys, "evaluate", "--data", str(FIXTURE), "--tune", "--force")
    assert rc == 2 and out == "" and "--model" in err and err.count("\n") == 1
    assert (DEFAULT_MODEL_DIR / "spanqa.json").read_bytes() == shipped
    assert not (DEFAULT_MODEL_DIR / "plots").exists()

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    before = (trained / "spanqa.json").read_bytes()
    for extra in (["--tune", "--force"], []):
        argv = ["evaluate", "--model", str(trained), "--data", str(FIXTURE), "--plots", str(tmp_path / "p")]
        rc, out, err = _run(capsys, *argv, *extra)
        assert rc == 2 and "pip install" in err and err.count("\n") == 1 and "Traceback" not in err
    assert (trained / "spanqa.json").read_bytes() == before and not (tmp_path / "p").exists()


def _f1_at(golds, examples, preds, threshold: float) -> float:
    answers = {
        ex.id: (p.answers[0].text if p.answers and p.null_score_diff >= threshold else "")
        for ex, p in zip(examples, preds)
    }
    return squad_v2_eval(golds, answers)["f1"]


def test_tune_refuses_the_evaluation_half(trained: Path, tmp_path: Path, capsys):
    data = tmp_path / "squad-v2.0-dev-half.json"
    shutil.copyfile(FIXTURE, data)
    before = (trained / "spanqa.json").read_bytes()
    rc, out, err = _run(capsys, "evaluate", "--model", str(trained), "--data", str(data), "--tune")
    assert rc == 2 and out == ""
    assert err.startswith("spanqa: error:") and "dev-half" in err and err.count("\n") == 1
    assert (trained / "spanqa.json").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "0"], "--limit"),
        (["--tune", "--null-threshold", "1"], "--null-threshold"),
        (["--answerable-prior", "1"], "--answerable-prior"),
        (["--answerable-prior", "0.5", "--null-threshold", "1"], "not both"),
    ],
)
def test_evaluate_usage_errors(trained: Path, capsys, argv, message):
    rc, _, err = _run(capsys, "evaluate", "--model", str(trained), "--data", str(FIXTURE), *argv)
    assert rc == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_an_interrupted_evaluation_resumes_where_it_stopped(
    trained: Path, tmp_path: Path, monkeypatch, capsys, command: str
):
    import spanqa.evaluation.journal
    from spanqa.reading.reader import Reader

    monkeypatch.setattr(spanqa.evaluation.journal, "CHUNK", 4)
    out = tmp_path / "out.json"
    argv = ["--model", str(trained), "--data", str(FIXTURE)]
    argv += ["--json"] if command == "evaluate" else ["--out", str(out)]
    rc, whole, _ = _run(capsys, command, *argv)
    assert rc == 0
    whole_file = out.read_text(encoding="utf-8") if command == "predict" else None
    out.unlink(missing_ok=True)
    assert not list((Path(os.environ["SPANQA_CACHE"]) / "runs").glob("*.jsonl"))  # removed when done

    original = Reader.answer_batch
    read: list[int] = []

    def die_on_the_third_chunk(self, items, **kwargs):
        items = list(items)
        if len(read) == 8:
            raise KeyboardInterrupt
        read.extend(range(len(items)))
        return original(self, items, **kwargs)

    monkeypatch.setattr(Reader, "answer_batch", die_on_the_third_chunk)
    rc, _, err = _run(capsys, command, *argv)
    assert rc == 130 and "interrupted" in err
    assert len(read) == 8
    assert not out.exists()  # nothing half-written under the real name

    read.clear()
    monkeypatch.setattr(Reader, "answer_batch", lambda self, items, **kw: original(self, _count(items), **kw))

    def _count(items):
        items = list(items)
        read.extend(range(len(items)))
        return items

    rc, resumed, err = _run(capsys, command, *argv)
    assert rc == 0 and "resuming: 8 of 14 questions" in err
    assert len(read) == 14 - 8  # only what the interrupted run had not read
    if command == "evaluate":
        assert json.loads(resumed) == json.loads(whole)
    else:
        assert out.read_text(encoding="utf-8") == whole_file


def test_a_model_with_one_token_type_trains_and_exports(tmp_path, monkeypatch):
    """Training and export verification batch like the reader: type ids 0 for a one-type model."""
    from spanqa.backends.export import verify_inputs
    from spanqa.training.loop import train
    from tiny_models import build_tiny_model

    base = build_tiny_model("bert", tmp_path / "one-type", type_vocab_size=1)
    assert verify_inputs(base)["token_type_ids"].max() == 0
    out = train(_config(base, tmp_path / "trained", epochs=1, max_examples=6))
    assert (out / "model.safetensors").is_file()


def test_null_weight_weighs_no_answer_windows():
    import torch

    from spanqa.training.loop import window_loss

    torch.manual_seed(0)
    start, end = torch.randn(3, 7), torch.randn(3, 7)
    labels = torch.tensor([[0, 0], [2, 4], [0, 0]])
    ce = torch.nn.functional.cross_entropy
    per = (ce(start, labels[:, 0], reduction="none") + ce(end, labels[:, 1], reduction="none")) / 2
    assert torch.isclose(window_loss(start, end, labels), per.mean())
    expected = (3 * per[0] + per[1] + 3 * per[2]) / 7
    assert torch.isclose(window_loss(start, end, labels, null_weight=3.0), expected)
    # a window whose start alone is CLS is not a no-answer label
    half = torch.tensor([[0, 3], [2, 4], [1, 1]])
    per_half = (ce(start, half[:, 0], reduction="none") + ce(end, half[:, 1], reduction="none")) / 2
    assert torch.isclose(window_loss(start, end, half, null_weight=3.0), per_half.mean())


def test_null_weight_must_be_positive(tmp_path, capsys):
    fixture = Path(__file__).parent / "fixtures"
    squad = next(iter(sorted(fixture.glob("*.json"))))
    code = main(
        [
            "train",
            "--base",
            str(tmp_path),
            "--train",
            str(squad),
            "--out",
            str(tmp_path / "o"),
            "--null-weight",
            "0",
        ]
    )
    assert code == 2
    assert "--null-weight must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_half_precision_weights_keep_a_float32_config(tiny_bert_dir: Path, tmp_path: Path):
    """`--save-dtype float16` halves the file only: loaders that follow the config compute in float32."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForQuestionAnswering

    from spanqa.backends.model_dir import load_tokenizer
    from spanqa.training.model_setup import save_model

    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir), dtype=torch.float32)
    out = tmp_path / "half"
    save_model(model, load_tokenizer(tiny_bert_dir), tiny_bert_dir, out, "float16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    loaded = AutoModelForQuestionAnswering.from_pretrained(str(out), dtype="auto")
    assert next(loaded.parameters()).dtype == torch.float32
