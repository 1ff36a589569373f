"""The persistent document index: add, re-add, skip, rm, ls, search, answer; all-or-nothing; bad input."""

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from spanqa import InputError, Reader
from spanqa.cli.main import main
from spanqa.retrieval.index import DocumentIndex
from spanqa.retrieval.passages import split_passages

LIGHTHOUSE = (
    "The Old Point lighthouse stands on a granite headland at the mouth of the harbour.\n\n"
    "Construction began in 1846 under the engineer Margaret Hale.\n\n"
    "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil."
)


@pytest.fixture
def corpus(tmp_path):
    """A folder with markdown/text files (one hidden, one of another type) and a JSONL file."""
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / ".git").mkdir()
    (docs / "lighthouse.md").write_text(LIGHTHOUSE, encoding="utf-8")
    (docs / "sub" / "harbour.txt").write_text("The harbour is deep and sheltered.", encoding="utf-8")
    (docs / ".git" / "HEAD.txt").write_text("ref: refs/heads/main", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG\x00\x00")
    lines = [
        {"id": "faq-1", "text": "Zürich is a city in Switzerland."},
        {"id": 7, "text": "Café opens at nine."},
    ]
    (tmp_path / "faq.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    return tmp_path


def state(index: DocumentIndex) -> list[tuple]:
    """Everything an add could change: documents, their passages, and what search finds."""
    docs = [(d.id, d.sha256, d.passages) for d in index.documents()]
    hits = [(h.doc, h.passage, h.start, h.end) for h in index.search("lighthouse harbour city café", 50)]
    return [*docs, *hits]


def test_add_ls_search_and_ids_relative_to_the_index(corpus):
    with DocumentIndex(corpus / "i.db") as index:
        report = index.add([corpus / "docs", corpus / "faq.jsonl"])
        assert sorted(report.added) == ["7", "docs/lighthouse.md", "docs/sub/harbour.txt", "faq-1"]
        infos = {d.id: d for d in index.documents()}
        assert set(infos) == set(report.added)
        assert infos["docs/lighthouse.md"].chars == len(LIGHTHOUSE)
        hits = index.search("When was the lighthouse first lit?", 3)
        assert hits[0].doc == "docs/lighthouse.md" and "first lit" in hits[0].text
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert index.text(h.doc)[h.start : h.end] == h.text
        assert index.search("zeppelin", 3) == []


def test_unchanged_files_are_skipped_and_changed_ones_replaced(corpus):
    with DocumentIndex(corpus / "i.db") as index:
        index.add([corpus / "docs"])
        again = index.add([corpus / "docs"])
        assert again.added == [] and again.replaced == [] and len(again.skipped) == 2
        (corpus / "docs" / "sub" / "harbour.txt").write_text("The harbour froze in 1903.", encoding="utf-8")
        changed = index.add([corpus / "docs"])
        assert changed.replaced == ["docs/sub/harbour.txt"] and changed.skipped == ["docs/lighthouse.md"]
        assert index.text("docs/sub/harbour.txt") == "The harbour froze in 1903."
        assert index.search("sheltered deep", 5) == []
        assert [h.doc for h in index.search("froze", 5)] == ["docs/sub/harbour.txt"]


def test_remove_is_all_or_nothing(corpus):
    with DocumentIndex(corpus / "i.db") as index:
        index.add([corpus / "faq.jsonl"])
        with pytest.raises(InputError, match="no document with id 'nope'"):
            index.remove(["faq-1", "nope"])
        assert {d.id for d in index.documents()} == {"faq-1", "7"}
        index.remove(["faq-1"])
        assert [d.id for d in index.documents()] == ["7"]
        assert index.search("Zürich", 5) == []


def test_answer_reads_the_retrieved_passages_and_points_into_the_document(corpus, tiny_bert_dir):
    reader = Reader.load(tiny_bert_dir)
    with DocumentIndex(corpus / "i.db") as index:
        index.add([corpus / "docs", corpus / "faq.jsonl"])
        pred = index.answer("When was the lighthouse first lit?", reader, passages=3, top_k=5)
        assert pred.answers
        for a in pred.answers:
            text = index.text(a.doc)
            assert text[a.start : a.end] == a.text
            passage = split_passages(text, index.passage_chars)[a.passage]
            assert passage.start <= a.start < passage.end
        nothing = index.answer("zeppelin?", reader)
        assert nothing.no_answer and nothing.answers == []


def test_a_failure_mid_add_leaves_the_index_as_it_was(corpus, monkeypatch):
    import spanqa.retrieval.index

    with DocumentIndex(corpus / "i.db") as index:
        index.add([corpus / "faq.jsonl"])
        before = state(index)
        calls = []

        def failing_split(text, max_chars):
            calls.append(text)
            if len(calls) == 2:
                raise OSError("disk full")
            return real_split(text, max_chars)

        real_split = spanqa.retrieval.index.split_passages
        monkeypatch.setattr(spanqa.retrieval.index, "split_passages", failing_split)
        with pytest.raises(OSError, match="disk full"):
            index.add([corpus / "docs"])
        assert state(index) == before
        monkeypatch.setattr(spanqa.retrieval.index, "split_passages", real_split)
        assert len(index.add([corpus / "docs"]).added) == 2


def test_a_process_killed_mid_add_leaves_the_index_as_it_was(corpus):
    db = corpus / "i.db"
    with DocumentIndex(db) as index:
        index.add([corpus / "docs"])
        before = state(index)
    script = textwrap.dedent(
        """
        import os, signal, sys
        from spanqa.retrieval.index import DocumentIndex

        def documents():
            for i in range(1000):
                if i == 300:
                    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no rollback: as a crash or kill -9
                yield f"new-{i}", f"Document {i} about the lighthouse keeper's harbour log. " * 20

        DocumentIndex(sys.argv[1]).add_texts(documents())
        """
    )
    run = subprocess.run([sys.executable, "-c", script, str(db)], capture_output=True, timeout=120)
    assert run.returncode == -9, run.stderr
    with DocumentIndex(db, create=False) as index:
        assert state(index) == before
        assert index._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert (
            index._db.execute(
                "INSERT INTO passage_text(passage_text) VALUES ('integrity-check')"
            )  # FTS5's check
        )
        assert index.add_texts([("after", "The lighthouse still works.")]).added == ["after"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"  \n\n ", "empty.txt: empty"),
        ("binary.txt", b"text\x00\x01\x02", "binary.txt holds binary data"),
        ("latin1.md", "Zürich".encode("latin-1"), "latin1.md is not valid UTF-8"),
        ("big.txt", b"word " * 300, "big.txt: 0.0 MB is over the limit"),
        (
            "bad.jsonl",
            b'{"id": "a", "text": "ok"}\n{"id": "b"}\n',
            'bad.jsonl line 2: expected an object with "id"',
        ),
        ("notjson.jsonl", b'{"id": "a", "text": "ok"}\n{oops\n', "notjson.jsonl line 2: not valid JSON"),
        ("nulls.jsonl", b'{"id": "a", "text": "a\\u0000b"}\n', "nulls.jsonl line 1: holds binary data"),
        (
            "surrogate.jsonl",
            b'{"id": "a", "text": "\\ud800"}\n',
            "surrogate.jsonl line 1: the text holds unpaired",
        ),
        ("noid.jsonl", b'{"id": "", "text": "x"}\n', "noid.jsonl line 1: the id must be a non-empty"),
        ("blank.jsonl", b"\n\n", "blank.jsonl: empty (no documents)"),
        ("dups.jsonl", b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "duplicate id 'a'"),
    ],
)
def test_bad_input_is_refused_whole_with_the_file_named(corpus, name, content, message):
    (corpus / name).write_bytes(content)
    with DocumentIndex(corpus / "i.db") as index:
        index.add([corpus / "faq.jsonl"])
        before = state(index)
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            index.add([corpus / "docs", corpus / name], max_bytes=1000)
        assert state(index) == before


def test_skip_bad_leaves_out_bad_files_but_not_duplicate_ids(corpus):
    (corpus / "docs" / "empty.md").write_text("", encoding="utf-8")
    (corpus / "docs" / "half.jsonl").write_bytes(b'{"id": "h1", "text": "fine"}\n{"id": 1.5, "text": "x"}\n')
    with DocumentIndex(corpus / "i.db") as index:
        report = index.add([corpus / "docs"], skip_bad=True)
        assert sorted(report.added) == ["docs/lighthouse.md", "docs/sub/harbour.txt"]
        assert len(report.refused) == 2 and any("empty.md" in r for r in report.refused)
        assert "h1" not in {d.id for d in index.documents()}  # a bad file is left out whole
        (corpus / "dup.jsonl").write_text('{"id": "faq-1", "text": "again"}\n', encoding="utf-8")
        with pytest.raises(InputError, match="duplicate id 'faq-1'"):
            index.add([corpus / "faq.jsonl", corpus / "dup.jsonl"], skip_bad=True)


def test_a_database_locked_by_another_writer_is_a_clear_error(corpus):
    db = corpus / "i.db"
    DocumentIndex(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with DocumentIndex(db, timeout=0.1) as index:
            with pytest.raises(InputError, match="locked by another writer"):
                index.add([corpus / "docs"])
            assert index.documents() == []  # readers are not blocked (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with DocumentIndex(db) as index:
        assert len(index.add([corpus / "docs"]).added) == 2


def test_files_that_are_not_an_index_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database " * 100, encoding="utf-8")
    with pytest.raises(InputError, match="not a spanqa index"):
        DocumentIndex(tmp_path / "notes.txt")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(InputError, match="not a spanqa index"):
        DocumentIndex(tmp_path / "other.db")
    with pytest.raises(InputError, match="no index at"):
        DocumentIndex(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(InputError, match="directory"):
        DocumentIndex(tmp_path)


# ---- command line ------------------------------------------------------------------------------------------


def test_cli_add_ls_rm_and_ask(corpus, tiny_bert_dir, capsys):
    db = str(corpus / "i.db")
    assert main(["index", "add", "--db", db, str(corpus / "docs"), str(corpus / "faq.jsonl")]) == 0
    assert "4 added, 0 replaced, 0 unchanged" in capsys.readouterr().out
    assert main(["index", "add", "--db", db, str(corpus / "docs")]) == 0
    assert "0 added, 0 replaced, 2 unchanged" in capsys.readouterr().out
    assert main(["index", "ls", "--db", db, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {d["id"] for d in listed} == {"7", "docs/lighthouse.md", "docs/sub/harbour.txt", "faq-1"}
    assert main(["index", "rm", "--db", db, "7"]) == 0
    capsys.readouterr()
    question = "When was the lighthouse first lit?"
    assert main(["ask", "--db", db, "--model", str(tiny_bert_dir), "--json", "--top-k", "3", question]) == 0
    out = json.loads(capsys.readouterr().out)
    with DocumentIndex(db) as index:
        for a in out["answers"]:
            assert index.text(a["doc"])[a["start"] : a["end"]] == a["text"] and a["passage"] >= 0
    assert main(["ask", "--db", db, "--model", str(tiny_bert_dir), question]) == 0
    assert "passage" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "ls", "--db", "{tmp}/missing.db"], "no index at"),
        (["index", "rm", "--db", "{tmp}/i.db", "nope"], "no document with id 'nope'"),
        (["index", "add", "--db", "{tmp}/i.db", "{tmp}/nowhere"], "not found"),
        (["index", "add", "--db", "{tmp}/i.db", "--max-mb", "0", "{tmp}/docs"], "--max-mb must be positive"),
        (["ask", "--db", "{tmp}/missing.db", "Who?"], "no index at"),
    ],
)
def test_cli_errors_are_one_line(corpus, capsys, argv, message):
    DocumentIndex(corpus / "i.db").close()
    assert main([a.replace("{tmp}", str(corpus)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
