"""The command line: ask, predict, tokens; every user mistake is one line on stderr and exit code 2."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spanqa import Answer, Prediction
from spanqa.cli.common import format_prediction
from spanqa.cli.main import main
from tiny_models import CORPUS, tiny_model_dir

CONTEXT = " ".join(CORPUS)
QUESTION = "When was the lighthouse first lit?"
ANSWER_KEYS = {"text", "start", "end", "score"}


@pytest.fixture(scope="module")
def model() -> str:
    return str(tiny_model_dir("bert"))


def run(capsys, monkeypatch, *argv: str, stdin: bytes | None = None, tty: bool = False):
    """(exit code, stdout, stderr) of `spanqa argv...` run in this process."""
    stream = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
    if tty:
        stream.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", stream)
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err: str, fragment: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spanqa: error: ") and fragment in lines[0], lines[0]


def check_json_prediction(obj: dict, contexts: list[str]) -> None:
    assert set(obj) == {"answers", "no_answer", "answerable", "answerable_prior", "null_score_diff"}
    assert isinstance(obj["no_answer"], bool)
    assert 0.0 <= obj["answerable"] <= 1.0
    assert sum(a["score"] for a in obj["answers"]) <= 1.0 + 1e-9  # overlapping spans are not two chances
    assert isinstance(obj["null_score_diff"], float) or obj["null_score_diff"] is None
    for a in obj["answers"]:
        assert set(a) == ANSWER_KEYS
        assert contexts[0][a["start"] : a["end"]] == a["text"]
        assert 0.0 <= a["score"] <= 1.0


# ---- ask ---------------------------------------------------------------------------------------------------


def test_ask_reads_the_context_from_an_argument_a_file_or_stdin(capsys, monkeypatch, model, tmp_path):
    file = tmp_path / "doc.txt"
    file.write_text(CONTEXT, encoding="utf-8")
    results = []
    for source, stdin in (
        (["--context", CONTEXT], None),
        (["--context-file", str(file)], None),
        ([], CONTEXT),
    ):
        argv = ["ask", "--model", model, *source, "--json", QUESTION]
        code, out, err = run(capsys, monkeypatch, *argv, stdin=stdin.encode() if stdin else None)
        assert code == 0, err
        obj = json.loads(out)
        check_json_prediction(obj, [CONTEXT])
        assert len(obj["answers"]) == 1
        results.append(obj)
    assert results[0] == results[1] == results[2]


def test_ask_top_k_json_and_text(capsys, monkeypatch, model):
    code, out, _ = run(
        capsys, monkeypatch, "ask", "--model", model, "--context", CONTEXT, "--top-k", "3", "--json", QUESTION
    )
    obj = json.loads(out)
    assert code == 0 and len(obj["answers"]) == 3
    check_json_prediction(obj, [CONTEXT])
    scores = [a["score"] for a in obj["answers"]]
    assert scores == sorted(scores, reverse=True)

    code, out, _ = run(
        capsys, monkeypatch, "ask", "--model", model, "--context", CONTEXT, "--top-k", "3", QUESTION
    )
    lines = [line for line in out.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert code == 0 and len(lines) == 3
    for line, a in zip(lines, obj["answers"]):
        assert json.dumps(a["text"], ensure_ascii=False) in line and f"[{a['start']}:{a['end']}]" in line


def test_ask_from_a_bom_file_keeps_offsets_in_the_text(capsys, monkeypatch, model, tmp_path):
    file = tmp_path / "bom.txt"
    file.write_bytes(b"\xef\xbb\xbf" + CONTEXT.encode())
    code, out, _ = run(
        capsys, monkeypatch, "ask", "--model", model, "--context-file", str(file), "--json", QUESTION
    )
    assert code == 0
    check_json_prediction(json.loads(out), [CONTEXT])  # offsets into the text, not the file's bytes


def test_a_text_without_readable_spans_gives_valid_json_and_a_plain_no_answer(capsys, monkeypatch, model):
    code, out, _ = run(
        capsys, monkeypatch, "ask", "--model", model, "--context", "\u200b\ufeff", "--json", QUESTION
    )
    obj = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert code == 0 and obj == {
        "answers": [],
        "no_answer": True,
        "answerable": 0.0,
        "answerable_prior": None,
        "null_score_diff": None,
    }
    code, out, _ = run(capsys, monkeypatch, "ask", "--model", model, "--context", "\u200b\ufeff", QUESTION)
    assert code == 0 and out.startswith("no answer")


def test_non_finite_null_score_diffs_become_json_null():
    for value in (float("-inf"), float("inf"), float("nan")):
        text = json.dumps(Prediction([], True, value).to_dict(), allow_nan=False)
        assert json.loads(text)["null_score_diff"] is None


# ---- what a person reads -----------------------------------------------------------------------------------

PARAGRAPH = "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."


def answer_at(text: str, score: float) -> Answer:
    start = PARAGRAPH.index(text)
    return Answer(text, start, start + len(text), score)


def test_an_answer_reads_plainly_with_offsets_score_and_its_surroundings():
    pred = Prediction([answer_at("12 March 1849", 0.87)], False, 3.25, answerable=0.94, answerable_prior=0.8)
    lines = format_prediction(pred, contexts=[PARAGRAPH]).splitlines()
    assert lines[0] == 'answer: "12 March 1849"  [32:45]  score 0.870'
    assert (
        lines[1].strip()
        == "The lighthouse was first lit on «12 March 1849», using a lamp that burned whale oil."
    )
    long = Prediction([Answer("x", 100, 101, 0.5)], False, 1.0)
    assert format_prediction(long, contexts=["a\n" * 50 + "x" + " b" * 50]).splitlines()[1].strip() == (
        "…" + "a " * 20 + "«x»" + " b" * 20 + "…"
    )
    assert lines[2].startswith("94% likely that the text answers the question (prior 0.8)")
    tiny = Prediction([answer_at("12 March 1849", 0.000123)], False, 3.25)
    assert "score 1.23e-04" in format_prediction(tiny)


def test_no_answer_is_said_first_and_guesses_are_marked_as_guesses():
    pred = Prediction([answer_at("whale oil", 0.1), answer_at("1849", 0.05)], True, -2.5, answerable=0.12)
    lines = format_prediction(pred).splitlines()
    assert lines[0].startswith("probably not in the text: 12% likely")
    assert lines[1] == "best guesses, not answers:"
    assert lines[2].startswith('1. "whale oil"') and lines[3].startswith('2. "1849"')
    one = format_prediction(Prediction([answer_at("1849", 0.05)], True, -2.5)).splitlines()
    assert one[1] == "best guess, not an answer:" and one[2].startswith('"1849"')
    assert format_prediction(Prediction([], True, float("-inf"))).startswith("no answer")


def test_several_files_name_the_file_of_each_answer(capsys, monkeypatch, model, tmp_path):
    files = []
    for i, text in enumerate((PARAGRAPH, CONTEXT)):
        files += ["--context-file", str(tmp_path / f"doc{i}.txt")]
        (tmp_path / f"doc{i}.txt").write_text(text, encoding="utf-8")
    code, out, _ = run(capsys, monkeypatch, "ask", "--model", model, *files, "--top-k", "4", QUESTION)
    assert code == 0 and sum("doc0.txt" in line or "doc1.txt" in line for line in out.splitlines()) == 4


def test_the_missing_default_model_is_one_line(capsys, monkeypatch, tmp_path):
    import spanqa.backends.model_dir

    monkeypatch.setattr(spanqa.backends.model_dir, "DEFAULT_MODEL_DIR", tmp_path / "model")
    code, _, err = run(capsys, monkeypatch, "ask", "--context", CONTEXT, QUESTION)
    assert_one_line_error(code, err, "default model is missing")


# ---- predict -----------------------------------------------------------------------------------------------


def squad(*qas: dict, context: str = CONTEXT) -> dict:
    return {
        "version": "v2.0",
        "data": [{"title": "T", "paragraphs": [{"context": context, "qas": list(qas)}]}],
    }


def test_predict_writes_one_json_line_per_question_with_a_progress_bar(capsys, monkeypatch, model, tmp_path):
    qas = [
        {"id": f"q{i}", "question": q, "answers": []}
        for i, q in enumerate(["Who built it?", QUESTION, "Why?"])
    ]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(squad(*qas)), encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    code, _, err = run(
        capsys,
        monkeypatch,
        "predict",
        "--model",
        model,
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch-size",
        "2",
    )
    assert code == 0, err
    assert "100%" in err and "q/s" in err  # tqdm's bar over questions, finished
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
    for r in rows:
        assert set(r) == {"id", "answers", "no_answer", "answerable", "answerable_prior", "null_score_diff"}
        check_json_prediction({k: v for k, v in r.items() if k != "id"}, [CONTEXT])
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON: "),
        (b"[1, 2]", 'expected an object with a "data" list'),
        (
            json.dumps({"data": [{"title": "x"}]}).encode(),
            'data[0]: expected an object with a "paragraphs" list',
        ),
        (
            json.dumps(squad({"id": "a", "question": "Q?"}, {"id": "b"})).encode(),
            "data[0].paragraphs[0].qas[1] (id b)",
        ),
        (
            json.dumps(
                squad({"id": "a", "question": "Q?", "answers": [{"text": "x", "answer_start": "3"}]})
            ).encode(),
            'qas[0] (id a): answers[0] needs "text" and integer "answer_start"',
        ),
        (
            json.dumps(squad({"id": "a", "question": "Q?"}, {"id": "b", "question": " "})).encode(),
            "question id b: question is empty",
        ),
        (
            json.dumps(squad({"id": "a", "question": "Q?"}, context="\n")).encode(),
            "question id a: context is empty",
        ),
        (b"\xff\xfe{}", "is not valid UTF-8 (byte 0)"),
        (b"{\x00}", "binary data (NUL bytes)"),
    ],
)
def test_predict_refuses_bad_squad_files_naming_the_first_bad_record(
    capsys, monkeypatch, model, tmp_path, content, message
):
    data = tmp_path / "bad.json"
    data.write_bytes(content)
    out = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys, monkeypatch, "predict", "--model", model, "--data", str(data), "--out", str(out)
    )
    assert_one_line_error(code, err, message)
    assert not out.exists()


def test_predict_reports_an_unwritable_output_in_one_line(capsys, monkeypatch, model, tmp_path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps(squad({"id": "a", "question": QUESTION})), encoding="utf-8")
    for out in (tmp_path / "no" / "such" / "dir.jsonl", tmp_path):
        code, _, err = run(
            capsys, monkeypatch, "predict", "--model", model, "--data", str(data), "--out", str(out)
        )
        assert_one_line_error(code, err, f"cannot write {out}")


# ---- tokens ------------------------------------------------------------------------------------------------


def test_tokens_shows_each_piece_with_its_character_offsets(capsys, monkeypatch, model):
    text = "Café naïve [SEP] 1849"
    code, out, _ = run(capsys, monkeypatch, "tokens", "--model", model, text)
    assert code == 0
    rows = out.splitlines()[1:]
    assert sum("(special)" in r for r in rows) == 2  # [CLS] and [SEP] of the template; the typed one is text
    shown = {}
    for r in rows:
        if "(special)" not in r:
            chars = r.split()[3]
            a, b = (int(x) for x in chars.strip("[]").split(":"))
            assert r.rstrip().endswith(json.dumps(text[a:b], ensure_ascii=False))
            shown[(a, b)] = text[a:b]
    assert shown[(0, 4)] == "Café" and shown[(5, 10)] == "naïve"


# ---- bad input: one line, exit code 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["ask", "--context", CONTEXT, ""], None, "question is empty"),
        (["ask", "--context", CONTEXT, " \t\u3000"], None, "question is empty"),
        (["ask", "--context", "", QUESTION], None, "context is empty"),
        (["ask", "--context", " \n\r\n ", QUESTION], None, "context is empty"),
        (["ask", "--context", "nul\x00byte", QUESTION], None, "context contains NUL"),
        (["ask", "--context", CONTEXT, "nul\x00?"], None, "question contains NUL"),
        (["ask", QUESTION], b"", "context is empty"),
        (["ask", QUESTION], b"\x89PNG\r\n\x1a\n\x00\x00", "stdin holds binary data"),
        (["ask", QUESTION], b"caf\xe9", "stdin is not valid UTF-8 (byte 3)"),
        (
            ["ask", "--context-file", "/no/such/file.txt", QUESTION],
            None,
            "context file not found: /no/such/file.txt",
        ),
        (["ask", "--context-file", "/", QUESTION], None, "is a directory"),
        (
            ["ask", "--context", CONTEXT, "--top-k", "0", QUESTION],
            None,
            "--top-k: must be a positive integer",
        ),
        (["ask", "--context", CONTEXT, "--top-k", "x", QUESTION], None, "--top-k: expected a whole number"),
        (["ask", "--context", CONTEXT], None, "the following arguments are required: question"),
        (["tokens", ""], None, "text is empty"),
        (["predict", "--data", "/no/such.json", "--out", "x.jsonl"], None, "SQuAD file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, monkeypatch, model, argv, stdin, message):
    code, out, err = run(capsys, monkeypatch, *argv[:1], "--model", model, *argv[1:], stdin=stdin)
    assert_one_line_error(code, err, message)
    assert out == ""


def test_bad_files_are_one_line(capsys, monkeypatch, model, tmp_path):
    cases = {
        "latin1.txt": (b"caf\xe9", "is not valid UTF-8"),
        "bin.dat": (b"PK\x03\x04\x00\x00", "binary data"),
    }
    cases["empty.txt"] = (b"  \n", "is empty")
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        code, _, err = run(
            capsys, monkeypatch, "ask", "--model", model, "--context-file", str(tmp_path / name), QUESTION
        )
        assert_one_line_error(code, err, message)
        assert name in err


def test_no_context_at_all_says_how_to_give_one(capsys, monkeypatch, model):
    code, _, err = run(capsys, monkeypatch, "ask", "--model", model, QUESTION, tty=True)
    assert_one_line_error(code, err, "give --context TEXT, --context-file FILE, or pipe the text on stdin")


def test_a_missing_model_is_one_line(capsys, monkeypatch, tmp_path):
    code, _, err = run(
        capsys, monkeypatch, "ask", "--model", str(tmp_path / "none"), "--context", CONTEXT, QUESTION
    )
    assert_one_line_error(code, err, "model directory not found")


# ---- the real executable -----------------------------------------------------------------------------------


def spanqa(*argv: str, stdin: bytes, env: dict | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("spanqa")
    command = (
        [str(script)]
        if script.is_file()
        else [sys.executable, "-c", "import sys; from spanqa.cli.main import main; sys.exit(main())"]
    )
    return subprocess.run(
        [*command, *argv], input=stdin, capture_output=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_the_installed_command_answers_from_piped_stdin(model):
    done = spanqa("ask", "--model", model, "--json", QUESTION, stdin=CONTEXT.encode())
    assert done.returncode == 0, done.stderr.decode()
    check_json_prediction(json.loads(done.stdout), [CONTEXT])


def test_the_installed_command_fails_in_one_line(tmp_path):
    done = spanqa(
        "ask",
        "--model",
        "nobody-spanqa-test/no-model",
        QUESTION,
        stdin=CONTEXT.encode(),
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert_one_line_error(done.returncode, done.stderr.decode(), "could not be downloaded")
    done = spanqa("ask", "--model", str(tmp_path), QUESTION, stdin=b"\xff\xfe binary")
    assert_one_line_error(done.returncode, done.stderr.decode(), "stdin is not valid UTF-8")


@pytest.mark.parametrize("value,no_answer", [("-1e9", False), ("1e9", True), ("-inf", False)])
def test_null_threshold_takes_negative_values_in_any_float_spelling(
    capsys, monkeypatch, model, value, no_answer
):
    args = ("ask", "--model", model, "--context", CONTEXT, "--json")
    code, out, _ = run(capsys, monkeypatch, *args, "--null-threshold", value, QUESTION)
    assert code == 0 and json.loads(out)["no_answer"] is no_answer
    # a question that looks like a number stays the question
    code, out, _ = run(capsys, monkeypatch, *args, "--null-threshold", value, "--", "-5")
    assert code == 0 and json.loads(out)["no_answer"] is no_answer
