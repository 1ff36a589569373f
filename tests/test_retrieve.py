"""Several documents, and long documents read retrieval-first: answers always index the caller's text."""

import json
import sys

import pytest

from spanqa import InputError, Reader
from spanqa.cli.main import main
from spanqa.retrieval.bm25 import match_query, query_terms, rank_passages
from spanqa.retrieval.passages import split_passages
from spanqa.retrieval.plan import Retrieval, plan_reads, select_regions

FILLER = [
    "Numbers like 3.14, 1,000 and 42% appear in text; so do e-mail@example.com and URLs.",
    "Café, naïve, résumé, Zürich, São Paulo, 北京, 東京, Москва appear in the harbour town's guide.",
    "The granite of the headland was quarried for a church and a school.",
]
KEY = "The Old Point lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."
QUESTION = "When was the Old Point lighthouse first lit?"


def long_document(paragraphs: int = 30, key_at: int = 17) -> str:
    """A text of many paragraphs; only one says when the lighthouse was lit."""
    out = []
    for i in range(paragraphs):
        body = " ".join(FILLER[(i + j) % len(FILLER)] for j in range(3))
        out.append(f"{KEY} {body}" if i == key_at else body)
    return "\n\n".join(out)


@pytest.fixture(scope="module")
def reader(tiny_bert_dir):
    return Reader.load(tiny_bert_dir)


# ---- BM25 ------------------------------------------------------------------------------------------------


def test_query_terms_drop_stopwords_but_never_everything():
    assert query_terms("When was the Lighthouse first lit?") == ["lighthouse", "first", "lit"]
    assert query_terms("Who was it?") == ["who", "was", "it"]
    assert query_terms("?!") == []
    assert match_query("...") is None


def test_bm25_ranks_the_passage_that_shares_the_rarest_words_first():
    passages = [FILLER[0], FILLER[1], KEY, FILLER[2], "A lighthouse is a tower."]
    assert rank_passages(QUESTION, passages, 2)[0] == 2
    assert rank_passages("Which lighthouses?", passages, 5) == [4, 2] or rank_passages(
        "Which lighthouses?", passages, 5
    ) == [2, 4]  # stemming: "lighthouses" finds "lighthouse"
    assert rank_passages("Which zeppelin?", passages, 3) == []


@pytest.mark.parametrize("question", ['AND OR NOT "x" NEAR(a b) * ^ - :col', "e-mail@example.com?", "'"])
def test_fts_syntax_in_a_question_is_searched_as_text(question):
    assert isinstance(rank_passages(question, FILLER, 3), list)


# ---- retrieval plans ---------------------------------------------------------------------------------------


def test_select_regions_joins_touching_passages_and_falls_back_to_the_first():
    text = long_document()
    passages = split_passages(text, 300)
    regions = select_regions(QUESTION, text, passages, 3)
    assert regions == sorted(regions)
    assert any(KEY in text[a:b] for a, b in regions)
    assert select_regions("Zeppelin?", text, passages, 2) == [(passages[0].start, passages[1].end)]


@pytest.mark.parametrize(
    "bad", [{"mode": "sometimes"}, {"passages": 0}, {"max_windows": -1}, {"passage_chars": 1.5}]
)
def test_bad_retrieval_options_are_input_errors(bad):
    with pytest.raises(InputError):
        Retrieval(**bad)


def test_auto_reads_short_texts_whole_and_long_ones_by_passages(reader):
    short, long = FILLER[0], long_document()
    windower = reader._windower(None, 128)
    plan = plan_reads([(QUESTION, short), (QUESTION, long)], windower, Retrieval("auto", max_windows=4))
    assert plan.items[0] == (QUESTION, short) and plan.maps[0] is None
    read = plan.items[1][1]
    assert sum(map(len, read)) < len(long) / 3
    assert len(windower([QUESTION] * len(read), read)) < len(windower([QUESTION], [long]))
    huge = plan_reads([(QUESTION, long)], windower, Retrieval("auto", max_windows=10_000))
    assert huge.maps == [None]


# ---- reading -----------------------------------------------------------------------------------------------


def test_retrieval_maps_answers_back_exactly(reader):
    text = long_document()
    pred = reader.answer(QUESTION, text, top_k=5, retrieve=Retrieval("always", passages=1, passage_chars=400))
    (a, b), *_ = select_regions(QUESTION, text, split_passages(text, 400), 1)
    alone = reader.answer(QUESTION, text[a:b], top_k=5, retrieve="never")
    assert pred.answers and len(pred.answers) == len(alone.answers)
    for got, ref in zip(pred.answers, alone.answers):
        assert (got.start, got.end) == (ref.start + a, ref.end + a)
        assert text[got.start : got.end] == got.text == ref.text
        assert got.score == ref.score and got.doc is None
    assert pred.null_score_diff == alone.null_score_diff and pred.no_answer == alone.no_answer


def test_auto_leaves_short_texts_exactly_as_never(reader):
    context = " ".join(FILLER) + " " + KEY
    auto = reader.answer(QUESTION, context, top_k=3)
    never = reader.answer(QUESTION, context, top_k=3, retrieve="never")
    assert auto == never


def test_several_documents_answers_name_their_document(reader):
    docs = [FILLER[0], long_document(), FILLER[2] + " " + KEY]
    pred = reader.answer(QUESTION, contexts=docs, top_k=10, retrieve=Retrieval("auto", max_windows=3))
    assert pred.answers
    for a in pred.answers:
        assert a.doc in (0, 1, 2)
        assert docs[a.doc][a.start : a.end] == a.text
    scores = [a.score for a in pred.answers]
    assert scores == sorted(scores, reverse=True)


def test_one_document_in_a_list_answers_like_the_document_alone(reader):
    context = FILLER[1] + " " + KEY
    alone = reader.answer(QUESTION, context, top_k=3)
    listed = reader.answer(QUESTION, contexts=[context], top_k=3)
    assert [(a.text, a.start, a.end, a.score) for a in listed.answers] == [
        (a.text, a.start, a.end, a.score) for a in alone.answers
    ]
    assert {a.doc for a in listed.answers} == {0}
    assert listed.null_score_diff == alone.null_score_diff


def test_the_no_answer_decision_is_taken_over_all_documents(reader):
    """A document repeated: the same windows, the same min null and best span, so the same decision."""
    context = FILLER[0] + " " + KEY
    one = reader.answer(QUESTION, contexts=[context], top_k=2)
    two = reader.answer(QUESTION, contexts=[context, context], top_k=2)
    assert two.null_score_diff == pytest.approx(one.null_score_diff, abs=1e-5)
    assert two.no_answer == one.no_answer
    assert {(a.start, a.end) for a in two.answers} == {(one.answers[0].start, one.answers[0].end)}
    assert {a.doc for a in two.answers} == {0, 1}


def test_answer_batch_with_retrieval_equals_answer_one_by_one(reader):
    items = [(QUESTION, long_document()), ("What did the lamp burn?", long_document(25, 3)), (QUESTION, KEY)]
    retrieval = Retrieval("auto", max_windows=3, passages=2)
    batch = reader.answer_batch(items, top_k=2, batch_size=3, retrieve=retrieval)
    for (q, c), pred in zip(items, batch):
        single = reader.answer(q, c, top_k=2, retrieve=retrieval)
        assert [(a.start, a.end) for a in pred.answers] == [(a.start, a.end) for a in single.answers]
        assert pred.null_score_diff == pytest.approx(single.null_score_diff, abs=1e-4)
        for a in pred.answers:
            assert c[a.start : a.end] == a.text


def test_bad_retrieve_value_is_an_input_error(reader):
    with pytest.raises(InputError, match="retrieve"):
        reader.answer(QUESTION, KEY, retrieve="maybe")
    with pytest.raises(InputError, match="retrieve"):
        reader.answer(QUESTION, KEY, retrieve=3)


# ---- command line ------------------------------------------------------------------------------------------


def spanqa(capsys, *args: str) -> tuple[int, str, str]:
    """The command line, run in this process (a subprocess would import torch again)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_names_the_file_of_each_answer(tiny_bert_dir, tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(FILLER[0], encoding="utf-8")
    b.write_text(long_document(), encoding="utf-8")
    common = ["ask", "--model", str(tiny_bert_dir), "--context-file", str(a), "--context-file", str(b)]
    code, out, err = spanqa(
        capsys, *common, "--top-k", "4", "--retrieve", "always", "--passages", "2", QUESTION
    )
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith(("1.", "2.", "3.", "4."))]
    assert lines and all(str(a) in line or str(b) in line for line in lines)
    code, out, err = spanqa(capsys, *common, "--top-k", "4", "--json", QUESTION)
    assert code == 0, err
    answers = json.loads(out)["answers"]
    texts = {str(a): a.read_text(encoding="utf-8"), str(b): b.read_text(encoding="utf-8")}
    for ans in answers:
        assert ans["file"] == [str(a), str(b)][ans["doc"]]
        assert texts[ans["file"]][ans["start"] : ans["end"]] == ans["text"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--retrieve", "sometimes"], "invalid choice"), (["--passages", "0"], "passages must be a positive")],
)
def test_cli_bad_retrieval_options_are_one_line_errors(tiny_bert_dir, capsys, args, message):
    if args[0] == "--retrieve":  # argparse's own error exits
        with pytest.raises(SystemExit) as exit_:
            main(["ask", "--model", str(tiny_bert_dir), "--context", KEY, *args, QUESTION])
        code, err = exit_.value.code, capsys.readouterr().err
    else:
        code, _, err = spanqa(capsys, "ask", "--model", str(tiny_bert_dir), "--context", KEY, *args, QUESTION)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_long_context_benchmark_runs_and_prints_one_table(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("long_context", ROOT / "benchmarks" / "long_context.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "long_context", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    articles = []
    for t in range(3):
        paragraphs = [
            {
                "context": long_document(4, key_at=t),
                "qas": [
                    {
                        "id": f"{t}-a",
                        "question": QUESTION,
                        "answers": [{"text": "12 March 1849", "answer_start": 0}],
                    },
                    {"id": f"{t}-n", "question": "Who?", "answers": [], "is_impossible": True},
                ],
            }
        ]
        articles.append({"title": f"article {t}", "paragraphs": paragraphs})
    data = tmp_path / "squad.json"
    data.write_text(json.dumps({"version": "v2.0", "data": articles}), encoding="utf-8")
    argv = ["--data", str(data), "--model", str(tiny_bert_dir), "--limit", "3", "--doc-tokens", "400"]
    assert (
        bench.main([*argv, "--max-windows", "2", "--passages", "1,2", "--out", str(tmp_path / "r.json")]) == 0
    )
    table = capsys.readouterr().out
    rows = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert len(rows) == 6 and all(r["questions"] == 3 for r in rows)
    assert table.count("\n| ") == 2 + len(rows)
    full, first = rows[0], rows[1]
    assert first["windows_per_q"] < full["windows_per_q"]
