"""Reading SQuAD-format JSON (v1.1 and v2.0) into plain records, with errors that name the bad record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.errors import InputError, check_text
from spanqa.retrieval.sources import read_text

# Where SQuAD-format files come from, for messages about a missing one: data is never shipped with spanqa.
SQUAD_SOURCE = "dev-v2.0.json from https://rajpurkar.github.io/SQuAD-explorer/"


@dataclass
class GoldAnswer:
    text: str
    start: int


@dataclass
class Example:
    id: str
    question: str
    context: str
    answers: list[GoldAnswer] = field(default_factory=list)
    is_impossible: bool = False
    title: str = ""
    paragraph: int = 0  # index of the paragraph in the whole file: questions sharing a context share it


def missing_file(path: str | Path, option: str = "--data") -> str:
    """The line for a SQuAD file that is not there: which option takes it and where such files come from."""
    return f"no SQuAD file at {path}: pass {option} FILE, a SQuAD-format file such as {SQUAD_SOURCE}"


def load_squad(path: str | Path) -> list[Example]:
    """All questions of a SQuAD-format file, in file order."""
    return parse_squad(read_squad_json(path), str(path))


def read_squad_json(path: str | Path) -> Any:
    """The parsed JSON of a SQuAD-format file (not yet checked to be SQuAD: see parse_squad)."""
    if not Path(path).exists():
        raise InputError(f"SQuAD file not found: {path} (SQuAD-format JSON; official files: {SQUAD_SOURCE})")
    text = read_text(path, "SQuAD file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def parse_squad(doc: object, source: str = "data") -> list[Example]:
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise InputError(f'{source}: not SQuAD format: expected an object with a "data" list')
    examples: list[Example] = []
    n_par = 0
    for a, article in enumerate(doc["data"]):
        where = f"{source}: data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise InputError(f'{where}: expected an object with a "paragraphs" list')
        title = article.get("title", "")
        for p, par in enumerate(article["paragraphs"]):
            pwhere = f"{where}.paragraphs[{p}]"
            if not isinstance(par, dict) or not isinstance(par.get("context"), str):
                raise InputError(f'{pwhere}: expected an object with a "context" string')
            if not isinstance(par.get("qas"), list):
                raise InputError(f'{pwhere}: expected a "qas" list')
            context = par["context"]
            for q, qa in enumerate(par["qas"]):
                examples.append(_parse_qa(qa, context, f"{pwhere}.qas[{q}]", str(title), n_par))
            n_par += 1
    return examples


def _parse_qa(qa: object, context: str, where: str, title: str, paragraph: int) -> Example:
    if not isinstance(qa, dict):
        raise InputError(f"{where}: expected an object")
    qid, question = qa.get("id"), qa.get("question")
    if not isinstance(qid, str | int) or isinstance(qid, bool):
        raise InputError(f'{where}: missing "id"')
    if not isinstance(question, str):
        raise InputError(f'{where} (id {qid}): missing "question" string')
    answers_raw = qa.get("answers", [])
    if not isinstance(answers_raw, list):
        raise InputError(f'{where} (id {qid}): "answers" must be a list')
    answers = []
    for k, ans in enumerate(answers_raw):
        if (
            not isinstance(ans, dict)
            or not isinstance(ans.get("text"), str)
            or not isinstance(ans.get("answer_start"), int)
            or isinstance(ans.get("answer_start"), bool)
        ):
            raise InputError(f'{where} (id {qid}): answers[{k}] needs "text" and integer "answer_start"')
        answers.append(GoldAnswer(ans["text"], ans["answer_start"]))
    impossible = bool(qa.get("is_impossible", False))
    return Example(str(qid), question, context, answers, impossible, title, paragraph)


def check_examples(examples: list[Example], source: str) -> None:
    """What reading a file's questions needs, checked before any model loads; errors name the question id.

    At least one question, each id once (predictions and metrics are keyed by id), a non-blank question and
    context.
    """
    if not examples:
        raise InputError(f"{source}: no questions in the file")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise InputError(f"{source}: question id {ex.id} appears more than once; ids must be unique")
        seen.add(ex.id)
        try:
            check_text(ex.question, "question")
            check_text(ex.context, "context")
        except InputError as e:
            raise InputError(f"{source}: question id {ex.id}: {e}") from None


def misplaced_answers(examples: list[Example]) -> list[str]:
    """Gold answers whose `answer_start` does not point at their text, each named by question id.

    The official metrics compare answer texts, so these do not change them; training repairs what it can
    (locate_answer). They are reported because they usually mean the file was edited or built wrongly.
    """
    problems = []
    for ex in examples:
        for k, answer in enumerate(ex.answers):
            where = f"question id {ex.id}: answers[{k}]: answer_start {answer.start}"
            found = ex.context[answer.start : answer.start + len(answer.text)]
            if not 0 <= answer.start <= len(ex.context) - len(answer.text):
                problems.append(f"{where} is outside its context of {len(ex.context)} characters")
            elif found != answer.text:
                problems.append(f"{where} reads {found!r} in the context, not {answer.text!r}")
    return problems


def split_by_article(doc: dict, fraction: float, seed: int = 0) -> tuple[dict, dict]:
    """Two SQuAD documents with whole articles in each, about `fraction` of the questions in the first."""
    import random

    if not 0 < fraction < 1:
        raise InputError(f"fraction must be between 0 and 1, got {fraction}")
    articles = list(doc["data"])
    random.Random(seed).shuffle(articles)
    total = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
    first, second, taken = [], [], 0
    for a in articles:
        n = sum(len(p["qas"]) for p in a["paragraphs"])
        if taken + n / 2 <= fraction * total:
            first.append(a)
            taken += n
        else:
            second.append(a)
    version = doc.get("version", "v2.0")
    return {"version": version, "data": first}, {"version": version, "data": second}


def locate_answer(context: str, answer: GoldAnswer) -> tuple[int, int] | None:
    """The answer's (start, end) characters, repaired when `answer_start` is off.

    A wrong start is repaired when the text occurs exactly once in the context; otherwise None.
    Surrounding whitespace in the answer text is not part of the span.
    """
    text = answer.text.strip()
    if not text:
        return None
    lead = len(answer.text) - len(answer.text.lstrip())
    start = answer.start + lead
    if context[start : start + len(text)] == text:
        return start, start + len(text)
    if context.count(text) == 1:
        start = context.index(text)
        return start, start + len(text)
    return None
