"""Feedback during long work: a status line while the model loads or a long text is cut into windows, then
a bar that moves batch by batch (never in 256-question steps); nothing extra for quick or piped commands."""

from __future__ import annotations

import io
import sys
import time
from typing import ClassVar

import pytest

import spanqa.cli.feedback as feedback
from spanqa import Reader
from spanqa.cli.feedback import Activity
from spanqa.cli.main import main
from spanqa.evaluation.evaluate import read_questions
from spanqa.evaluation.journal import CHUNK, run_resumable
from spanqa.evaluation.squad import Example
from tiny_models import CORPUS, tiny_model_dir, tiny_reader

QUESTION = "When was the lighthouse first lit?"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def as_terminal(monkeypatch) -> Terminal:
    """stderr as a terminal, and status lines at once (no waiting in tests). Called in the test itself:
    pytest's output capture puts its own sys.stderr back between a fixture's setup and the test."""
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(feedback, "STATUS_DELAY", 0.0)
    return stream


def wait_for(stream: io.StringIO, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in stream.getvalue():
        assert time.monotonic() < deadline, f"{text!r} never appeared: {stream.getvalue()!r}"
        time.sleep(0.01)


def test_a_long_step_says_what_it_does_then_erases_the_line(monkeypatch):
    terminal = as_terminal(monkeypatch)
    with Activity("loading the model"):
        wait_for(terminal, "spanqa: loading the model…")
    assert terminal.getvalue().endswith("\r\x1b[K")  # what follows stands alone


def test_piped_stderr_gets_no_status_lines(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(feedback, "STATUS_DELAY", 0.0)
    with Activity("loading the model", stream=stream) as activity:
        time.sleep(0.1)
        activity(3, 10)
    assert stream.getvalue() == ""


def test_the_model_load_shows_a_status_line(monkeypatch, capsys):
    terminal = as_terminal(monkeypatch)
    real_load = Reader.load.__func__

    def slow_load(cls, *args, **kwargs):
        wait_for(terminal, "spanqa: loading the model (torch)…")  # shown while the load is still running
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(Reader, "load", classmethod(slow_load))
    model = str(tiny_model_dir("bert"))
    assert main(["ask", "--model", model, "--context", " ".join(CORPUS), QUESTION]) == 0
    assert "answer" in capsys.readouterr().out


def test_ask_on_a_long_text_shows_a_bar_of_windows(monkeypatch, capsys):
    terminal = as_terminal(monkeypatch)
    text = " ".join(CORPUS) * 40
    model = str(tiny_model_dir("bert"))
    argv = [
        "ask",
        "--model",
        model,
        "--context",
        text,
        "--retrieve",
        "never",
        "--max-seq-len",
        "32",
        QUESTION,
    ]
    assert main(argv) == 0
    shown = terminal.getvalue()
    assert f"reading {len(text):,} characters" in shown and "win" in shown  # tqdm's bar, in windows


class RecordingBar:
    """tqdm's bar, keeping the size of every step it was moved by."""

    steps: ClassVar[list[int]] = []

    def __init__(self, *args, **kwargs):
        self.n = kwargs.get("initial", 0)

    def update(self, n: int) -> None:
        RecordingBar.steps.append(n)
        self.n += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def recorded_steps(monkeypatch) -> list[int]:
    import tqdm

    RecordingBar.steps = []
    monkeypatch.setattr(tqdm, "tqdm", RecordingBar)
    return RecordingBar.steps


def test_the_question_bar_moves_within_a_chunk(recorded_steps):
    ids = [str(i) for i in range(CHUNK)]

    def read_chunk(indexes, report):
        for done in range(1, 9):
            report(done, 8)
        return [{"id": ids[i]} for i in indexes]

    run_resumable(ids, read_chunk, None)
    assert recorded_steps == [CHUNK // 8] * 8


def test_evaluate_progress_moves_batch_by_batch(recorded_steps):
    examples = [Example(str(i), QUESTION, sentence) for i, sentence in enumerate(CORPUS * 3)]
    read_questions(tiny_reader("bert"), examples, batch_size=2, progress=True)
    assert sum(recorded_steps) == len(examples)
    assert max(recorded_steps) < len(examples) / 2  # many small steps, not one per chunk
