"""Broken files and bad options: a typed exception in the library, one line and exit code 2 on the command
line, and always before the (slow) model load when the mistake can be seen without the model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from spanqa import InputError, ModelError, Reader
from test_cli import run  # one in-process CLI runner for both files
from tiny_models import CORPUS, tiny_model_dir, tiny_reader

CONTEXT = " ".join(CORPUS)
QUESTION = "When was the lighthouse first lit?"


def one_line_error(code, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spanqa: error: "), lines[0]
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: the mistake must be found before the ~7 s load."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(Reader, "load", refuse)


# ---- broken weight files -----------------------------------------------------------------------------------


def broken_copy(tmp_path: Path, damage: str) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("bert"), model)
    weights = model / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else bytes(range(256)) * 40)
    return model


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_broken_safetensors_file_is_a_model_error_naming_it(tmp_path, backend, damage):
    model = broken_copy(tmp_path, damage)
    with pytest.raises(ModelError, match=r"model\.safetensors is not a readable safetensors file"):
        Reader.load(model, backend=backend)


def test_a_broken_safetensors_file_is_one_line_on_the_command_line(capsys, monkeypatch, tmp_path):
    model = broken_copy(tmp_path, "truncated")
    code, _, err = run(capsys, monkeypatch, "ask", "--model", str(model), "--context", CONTEXT, QUESTION)
    assert str(model / "model.safetensors") in one_line_error(code, err)


def test_exporting_a_broken_safetensors_file_is_one_line(capsys, monkeypatch, tmp_path):
    model = broken_copy(tmp_path, "random")
    code, _, err = run(capsys, monkeypatch, "export", "--model", str(model), "--out", str(tmp_path / "out"))
    assert str(model / "model.safetensors") in one_line_error(code, err)


# ---- library options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [-1, 0, 1.5, "2"])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(InputError, match="threads must be a positive integer"):
        Reader.load(tiny_model_dir("bert"), threads=threads)


@pytest.mark.parametrize("value", [float("nan"), "x", "0.5", True, [1.0]])
def test_a_null_threshold_that_is_not_a_number_is_refused(value):
    reader = tiny_reader("bert")
    with pytest.raises(InputError, match="null_threshold must be a number"):
        reader.answer(QUESTION, CONTEXT, null_threshold=value)
    with pytest.raises(InputError, match="null_threshold must be a number"):
        reader.answer_batch([(QUESTION, CONTEXT)], null_threshold=value)


@pytest.mark.parametrize("value", [float("-inf"), float("inf"), 0, 2.5])
def test_numbers_and_infinities_are_thresholds(value):
    pred = tiny_reader("bert").answer(QUESTION, CONTEXT, null_threshold=value)
    if value == float("inf"):
        assert pred.no_answer
    if value == float("-inf"):
        assert not pred.no_answer


@pytest.mark.parametrize("contexts", ["abc def", b"abc def"])
def test_contexts_given_one_string_says_it_wants_a_list(contexts):
    with pytest.raises(InputError, match="contexts must be a list of strings") as caught:
        tiny_reader("bert").answer(QUESTION, contexts=contexts)
    assert "contexts[" not in str(caught.value)  # not a complaint about one of its characters


# ---- command-line options, checked before the model loads --------------------------------------------------


@pytest.mark.parametrize(
    "option,fragment",
    [
        (["--top-k", "0"], "argument --top-k: must be a positive integer, got 0"),
        (["--max-answer-len", "0"], "argument --max-answer-len: must be a positive integer"),
        (["--top-k", "two"], "argument --top-k: expected a whole number"),
        (["--null-threshold", "nan"], "argument --null-threshold: must be a number"),
        (["--null-threshold", "x"], "argument --null-threshold: expected a number"),
        (["--doc-stride", "-1"], "argument --doc-stride: must be at least 0"),
        (["--max-seq-len", "4"], "argument --max-seq-len: must be at least 8"),
    ],
)
@pytest.mark.parametrize("command", ["ask", "evaluate", "predict"])
def test_bad_reading_options_are_refused_before_the_model_loads(
    capsys, monkeypatch, tmp_path, no_model_load, option, fragment, command
):
    data = write_squad(tmp_path / "d.json", squad(qa("q1", QUESTION)))
    argv = {
        "ask": ["ask", "--context", CONTEXT, *option, QUESTION],
        "evaluate": ["evaluate", "--data", str(data), *option],
        "predict": ["predict", "--data", str(data), "--out", str(tmp_path / "o.jsonl"), *option],
    }[command]
    code, _, err = run(capsys, monkeypatch, *argv)
    assert fragment in one_line_error(code, err)


@pytest.mark.parametrize(
    "option,fragment",
    [
        (["--batch-size", "0"], "--batch-size: must be a positive integer"),
        (["--limit", "0"], "--limit must be"),
    ],
)
def test_bad_counts_in_evaluate_are_refused_before_the_model_loads(
    capsys, monkeypatch, tmp_path, no_model_load, option, fragment
):
    data = write_squad(tmp_path / "d.json", squad(qa("q1", QUESTION)))
    code, _, err = run(capsys, monkeypatch, "evaluate", "--data", str(data), *option)
    assert fragment in one_line_error(code, err)


# ---- SQuAD files -------------------------------------------------------------------------------------------


def qa(qid: str, question: str, answers: list[tuple[str, int]] | None = None) -> dict:
    answers = answers or []
    return {
        "id": qid,
        "question": question,
        "answers": [{"text": t, "answer_start": s} for t, s in answers],
        "is_impossible": not answers,
    }


def squad(*qas: dict, context: str = CONTEXT) -> dict:
    return {
        "version": "v2.0",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": list(qas)}]}],
    }


def write_squad(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def squad_commands(data: Path, tmp_path: Path) -> dict[str, list[str]]:
    return {
        "evaluate": ["evaluate", "--data", str(data)],
        "predict": ["predict", "--data", str(data), "--out", str(tmp_path / "out.jsonl")],
    }


ANSWER = CORPUS[0].split()[-1].strip(".")  # a word the context holds, at a known place
ANSWER_START = CONTEXT.index(ANSWER)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize(
    "doc,fragment",
    [
        ({"version": "v2.0", "data": []}, "no questions in the file"),
        (squad(qa("q1", QUESTION), qa("q1", "Who?")), "question id q1 appears more than once"),
        (squad(qa("q1", QUESTION), qa("q2", "   ")), "question id q2: question is empty"),
    ],
)
def test_squad_files_predict_and_evaluate_both_refuse_before_the_model_loads(
    capsys, monkeypatch, tmp_path, no_model_load, command, doc, fragment
):
    data = write_squad(tmp_path / "d.json", doc)
    code, _, err = run(capsys, monkeypatch, *squad_commands(data, tmp_path)[command])
    assert fragment in one_line_error(code, err)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "answer,fragment",
    [
        ((ANSWER, len(CONTEXT) + 5), f"answer_start {len(CONTEXT) + 5} is outside its context"),
        ((ANSWER, -3), "answer_start -3 is outside its context"),
        ((ANSWER, ANSWER_START + 1), f"answer_start {ANSWER_START + 1} reads"),
    ],
)
def test_evaluate_reports_a_gold_answer_start_that_misses_its_text(
    capsys, monkeypatch, tmp_path, answer, fragment
):
    doc = squad(qa("q1", QUESTION, [(ANSWER, ANSWER_START)]), qa("q2", QUESTION, [answer]))
    data = write_squad(tmp_path / "d.json", doc)
    model = str(tiny_model_dir("bert"))
    code, out, err = run(capsys, monkeypatch, "evaluate", "--model", model, "--data", str(data), "--json")
    assert code == 0, err  # the official metrics compare texts: they stand, and the file's flaw is named
    assert json.loads(out)["total"] == 2
    warnings = [line for line in err.splitlines() if line.startswith("spanqa: warning: ")]
    assert len(warnings) == 1
    assert "1 gold answer(s)" in warnings[0] and "question id q2: answers[0]" in warnings[0]
    assert fragment in warnings[0]


def test_evaluate_is_quiet_about_gold_answers_at_their_offsets(capsys, monkeypatch, tmp_path):
    doc = squad(qa("q1", QUESTION, [(ANSWER, ANSWER_START)]), qa("q2", "Who?"))
    data = write_squad(tmp_path / "d.json", doc)
    model = str(tiny_model_dir("bert"))
    code, out, err = run(capsys, monkeypatch, "evaluate", "--model", model, "--data", str(data), "--json")
    assert code == 0, err
    assert json.loads(out)["total"] == 2
    assert "warning" not in err


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_missing_squad_file_says_where_squad_files_come_from(capsys, monkeypatch, tmp_path, command):
    code, _, err = run(capsys, monkeypatch, *squad_commands(tmp_path / "dev-v2.0.json", tmp_path)[command])
    line = one_line_error(code, err)
    assert "SQuAD file not found" in line and "https://rajpurkar.github.io/SQuAD-explorer/" in line


# ---- a missing optional package ----------------------------------------------------------------------------


def test_plots_without_matplotlib_are_refused_before_the_model_loads(
    capsys, monkeypatch, tmp_path, no_model_load
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    data = write_squad(tmp_path / "d.json", squad(qa("q1", QUESTION, [(ANSWER, ANSWER_START)])))
    code, _, err = run(capsys, monkeypatch, "evaluate", "--data", str(data), "--plots", str(tmp_path / "p"))
    line = one_line_error(code, err)
    assert "--plots: this needs matplotlib" in line and "pip install 'matplotlib" in line


def test_any_missing_package_is_one_line_naming_the_pip_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails as if not installed
    code, _, err = run(capsys, monkeypatch, "serve", "--port", "0")
    line = one_line_error(code, err)
    assert "this needs uvicorn" in line and "pip install 'uvicorn" in line
