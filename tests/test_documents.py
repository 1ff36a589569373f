"""PDF, HTML and DOCX in the index: their text and structure, cited answers, bad files, schema upgrade.

Every fixture is built here at test time (tests/documents.py): PDFs by a minimal writer, DOCX by
python-docx, HTML by hand.
"""

from __future__ import annotations

import functools
import io
import json
import sqlite3
import zipfile

import pytest

from documents import encrypted_pdf_bytes, html_page, pdf_bytes, write_docx
from spanqa import InputError, Reader
from spanqa.cli.main import main
from spanqa.retrieval import sources
from spanqa.retrieval.formats import extract, page_of, sniff_format
from spanqa.retrieval.index import DocumentIndex

# Three pages, the answers to the questions below on pages 1, 2 and 3.
PAGES = [
    [
        "The Old Point lighthouse stands on a granite headland at the mouth of the harbour.",
        "Construction began in 1846 under the engineer Margaret Hale.",
    ],
    [
        "The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil.",
        "In 1902 the oil lamp was replaced by a paraffin burner.",
    ],
    [
        "The tower is 38 metres tall and was built from stone quarried on the island itself.",
        "Its beam can be seen from 40 kilometres away on a clear night.",
    ],
]
# The answer must hold these words and at most one word more: "38 metres" and "38 metres tall" are both
# right (the shipped models have given each), "38 metres tall and was built" is not.
QUESTIONS = {
    "Who was the engineer of the lighthouse?": ("Margaret Hale", 1),
    "When was the lighthouse first lit?": ("12 March 1849", 2),
    "How tall is the tower?": ("38 metres", 3),
}
EXTRA_WORDS = 1


def state(db) -> list[tuple]:
    """Every row of the index: what an add that fails must leave as it was."""
    with sqlite3.connect(db) as con:
        return [
            *con.execute("SELECT id, sha256, format, pages, file_sha256 FROM documents ORDER BY id"),
            *con.execute('SELECT doc, n, start, "end", page FROM passages ORDER BY id'),
            *con.execute("SELECT rowid, text FROM passage_text ORDER BY rowid"),
        ]


# ---- the readers -------------------------------------------------------------------------------------------


def test_pdf_text_keeps_its_pages_and_empty_pages_are_counted():
    extracted = extract(pdf_bytes([PAGES[0], None, PAGES[1]]), "a.pdf")
    assert extracted.format == "pdf" and len(extracted.pages) == 3
    first, empty, last = (extracted.text[a:b] for a, b in extracted.pages)
    assert first == "\n".join(PAGES[0]) and empty == "" and last == "\n".join(PAGES[1])
    at = extracted.text.index("12 March")
    assert page_of(extracted.pages, at) == 3 and page_of(extracted.pages, 0) == 1


def test_html_main_text_without_navigation_scripts_or_footer():
    html = html_page("Old Point", ["First <b>lit</b> in\n 1849.", "Tall: 38 m.<br>\n Wide: 6 m."]).encode()
    extracted = extract(html, "page.html")
    assert extracted.text == "Old Point\n\nFirst lit in 1849.\n\nTall: 38 m.\nWide: 6 m."
    assert extracted.pages is None and extracted.format == "html"


def test_html_in_another_declared_charset_and_deeply_nested():
    html = "<html><head><meta charset='iso-8859-1'></head><body><p>Café crème</p></body></html>"
    assert extract(html.encode("latin-1"), "x.html").text == "Café crème"
    deep = "<html><body>" + "<div>" * 5000 + "deep text" + "</div>" * 5000 + "</body></html>"
    assert extract(deep.encode(), "deep.html").text == "deep text"


def test_docx_headings_paragraphs_and_tables(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Terms of hire", level=1)
    document.add_paragraph("The fee is 40 euros per day.")
    document.add_paragraph("")
    table = document.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "Boat", (0, 1): "Fee", (1, 0): "Skiff", (1, 1): "40 euros"}.items():
        table.cell(r, c).text = text
    document.save(str(tmp_path / "t.docx"))
    extracted = extract((tmp_path / "t.docx").read_bytes(), "t.docx")
    assert extracted.text == "Terms of hire\n\nThe fee is 40 euros per day.\n\nBoat | Fee\nSkiff | 40 euros"


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (b"%PDF-1.4 ...", "report.txt", "pdf"),  # the content wins over a wrong extension
        (b"PK\x03\x04...word/document.xml...", "letter", "docx"),
        (b"PK\x03\x04...", "photos.zip", "text"),  # another zip: refused as binary by the text reader
        (b"\xef\xbb\xbf <!DOCTYPE html><html>", "page", "html"),
        (b"<!-- saved --><html><body>", "saved.dat", "html"),
        (b"<p>not a page, just text with a tag</p>", "notes", "text"),
        (b"plain words", "notes.md", "text"),
        (b"<html>", "page.htm", "html"),
    ],
)
def test_format_by_content_then_extension(data, name, expected):
    assert sniff_format(data, name) == expected


# ---- answers that cite the page ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader(default_model_dir) -> Reader:
    return Reader.load()


def test_answers_cite_the_page_and_passage_holding_them(tmp_path, reader):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "lighthouse.pdf").write_bytes(pdf_bytes(PAGES))
    (tmp_path / "docs" / "about.html").write_text(html_page("About", ["The keeper's cat was called Tom."]))
    write_docx(
        tmp_path / "docs" / "hire.docx", [("heading", "Boats"), ("paragraph", "A skiff costs 40 euros.")]
    )
    with DocumentIndex(tmp_path / "i.db") as index:
        assert sorted(index.add([tmp_path / "docs"]).added) == [
            "docs/about.html",
            "docs/hire.docx",
            "docs/lighthouse.pdf",
        ]
        pages = index.pages("docs/lighthouse.pdf")
        text = index.text("docs/lighthouse.pdf")
        assert len(pages) == 3 and index.pages("docs/hire.docx") is None
        for question, (expected, page) in QUESTIONS.items():
            pred = index.answer(question, reader, top_k=3)
            best = pred.best
            assert best is not None and expected in best.text, question
            assert len(best.text.split()) <= len(expected.split()) + EXTRA_WORDS, (question, best.text)
            assert best.doc == "docs/lighthouse.pdf" and best.citation.page == page
            for a in pred.answers:  # every answer, not only the best, is exact and cited
                c = a.citation
                full = index.text(a.doc)
                assert full[a.start : a.end] == a.text
                assert full[c.passage_start : c.passage_end] == c.passage_text
                assert c.passage_start <= a.start < a.end <= c.passage_end
                assert c.source == str(tmp_path / "docs" / a.doc.removeprefix("docs/"))
                if a.doc == "docs/lighthouse.pdf":
                    start, end = pages[c.page - 1]
                    assert start <= a.start and a.end <= end and c.format == "pdf"
            d = best.to_dict()
            assert text[d["start"] : d["end"]] == d["text"] and d["page"] == page and d["format"] == "pdf"
        cat = index.answer("What was the keeper's cat called?", reader).best
        assert cat.text == "Tom" and cat.doc == "docs/about.html" and cat.citation.page is None
        assert "page" not in cat.to_dict() and cat.to_dict()["source"].endswith("about.html")


def test_passages_never_cross_a_page(tmp_path):
    long_pages = [[f"Page {p} line {i} tells of ships and storms." for i in range(60)] for p in range(4)]
    (tmp_path / "long.pdf").write_bytes(pdf_bytes(long_pages))
    with DocumentIndex(tmp_path / "i.db") as index:
        index.add([tmp_path / "long.pdf"])
        pages = index.pages("long.pdf")
    with sqlite3.connect(tmp_path / "i.db") as con:
        rows = list(con.execute('SELECT start, "end", page FROM passages ORDER BY n'))
    assert len(rows) > 4 and {page for *_, page in rows} == {1, 2, 3, 4}
    for start, end, page in rows:
        assert pages[page - 1][0] <= start < end <= pages[page - 1][1]


def test_cli_ask_json_carries_the_citation(tmp_path, capsys, default_model_dir):
    (tmp_path / "l.pdf").write_bytes(pdf_bytes(PAGES))
    db = str(tmp_path / "i.db")
    assert main(["index", "add", "--db", db, str(tmp_path / "l.pdf")]) == 0
    assert main(["index", "ls", "--db", db]) == 0
    listed = capsys.readouterr().out
    assert "\nl.pdf\tpdf\t" in listed and "\t3 pages\t" in listed
    assert main(["ask", "--db", db, "--json", "When was the lighthouse first lit?"]) == 0
    best = json.loads(capsys.readouterr().out)["answers"][0]
    assert best["text"] == "12 March 1849" and best["page"] == 2 and best["doc"] == "l.pdf"
    assert best["passage_text"][best["start"] - best["passage_start"] :].startswith("12 March 1849")
    assert main(["ask", "--db", db, "When was the lighthouse first lit?"]) == 0
    out = capsys.readouterr().out
    assert "l.pdf [" in out and "page 2 passage" in out and "«12 March 1849»" in out


# ---- bad files: one line naming the file, nothing half-added --------------------------------------------


@functools.cache
def zip_bomb() -> bytes:
    """A DOCX-named zip whose entries expand to 250 MB of zeros (about 250 KB on disk)."""
    out = io.BytesIO()
    zeros = b"\0" * 25_000_000
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
        for n in range(10):
            z.writestr(f"word/media/pad{n}.bin", zeros)
    return out.getvalue()


def not_a_docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("readme.txt", "hello")
    return out.getvalue()


BAD_FILES = {
    "encrypted.pdf": (lambda: encrypted_pdf_bytes(PAGES), "the PDF is encrypted"),
    "truncated.pdf": (lambda: pdf_bytes(PAGES)[:400], "not a readable PDF"),
    "garbage.pdf": (lambda: b"%PDF-1.7\n" + bytes(range(256)) * 20, "not a readable PDF"),
    "scanned.pdf": (lambda: pdf_bytes([None, None]), "has no text layer"),
    "bomb.docx": (zip_bomb, "zip bomb"),
    "archive.docx": (not_a_docx, "not a DOCX"),
    "broken.docx": (lambda: b"PK\x03\x04" + b"\x00" * 100, "not a valid zip archive"),
    "scripts.html": (
        lambda: (
            b"<html><head><script>a()</script></head><body><script>b()</script><style>p{}</style></body></html>"
        ),
        "no text outside scripts",
    ),
    "latin1.txt": (lambda: "Café".encode("latin-1"), "not valid UTF-8"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_refused_in_one_line_naming_it_and_nothing_is_added(tmp_path, capsys, name):
    make, message = BAD_FILES[name]
    (tmp_path / "good.pdf").write_bytes(pdf_bytes(PAGES))
    (tmp_path / name).write_bytes(make())
    db = tmp_path / "i.db"
    DocumentIndex(db).close()
    before = state(db)
    with DocumentIndex(db) as index, pytest.raises(InputError, match=message) as error:
        index.add([tmp_path / "good.pdf", tmp_path / name])
    assert name in str(error.value) and state(db) == before
    assert main(["index", "add", "--db", str(db), str(tmp_path / "good.pdf"), str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and name in err and len(err.splitlines()) == 1 and state(db) == before


def test_a_folder_skips_and_counts_bad_files(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.pdf").write_bytes(pdf_bytes(PAGES))
    for name, (make, _) in BAD_FILES.items():
        (folder / name).write_bytes(make())
    db = str(tmp_path / "i.db")
    assert main(["index", "add", "--db", db, "--skip-bad", str(folder)]) == 0
    captured = capsys.readouterr()
    assert f"1 added, 0 replaced, 0 unchanged, {len(BAD_FILES)} refused" in captured.out
    with DocumentIndex(db) as index:
        assert [d.id for d in index.documents()] == ["docs/good.pdf"]


def test_a_500_page_pdf_indexes_and_a_page_limit_refuses_it_before_reading(tmp_path):
    book = [[f"Chapter {p}: the keeper logged {p} storms."] for p in range(500)]
    (tmp_path / "book.pdf").write_bytes(pdf_bytes(book))
    with DocumentIndex(tmp_path / "i.db") as index:
        with pytest.raises(InputError, match=r"book.pdf: 500 pages is over the limit of 100 pages"):
            index.add([tmp_path / "book.pdf"], max_pages=100)
        assert index.documents() == []
        index.add([tmp_path / "book.pdf"])
        (info,) = index.documents()
        assert info.pages == 500 and info.format == "pdf"
        (hit,) = index.search("keeper logged 377 storms", 1)
        assert hit.page == 378 and "377 storms" in hit.text


def test_an_owner_password_only_pdf_is_read(tmp_path):
    """Many PDFs are encrypted only to restrict printing or copying: they open without a password."""
    data = encrypted_pdf_bytes(PAGES, password="")
    assert extract(data, "restricted.pdf").text.startswith("The Old Point lighthouse")


# ---- re-runs and folders -------------------------------------------------------------------------------


def test_a_rerun_skips_unchanged_files_without_reading_them(tmp_path, monkeypatch):
    (tmp_path / "a.pdf").write_bytes(pdf_bytes(PAGES))
    (tmp_path / "b.html").write_text(html_page("B", ["Bee."]))
    with DocumentIndex(tmp_path / "i.db") as index:
        assert len(index.add([tmp_path]).added) == 2

        def never(*args, **kwargs):
            raise AssertionError("an unchanged file was extracted again")

        monkeypatch.setattr(sources, "extract", never)
        assert sorted(index.add([tmp_path]).skipped) == ["a.pdf", "b.html"]
        monkeypatch.undo()
        (tmp_path / "a.pdf").write_bytes(pdf_bytes([*PAGES, ["A fourth page."]]))
        again = index.add([tmp_path])
        assert again.replaced == ["a.pdf"] and again.skipped == ["b.html"]
        assert len(index.pages("a.pdf")) == 4


def test_a_folder_of_200_mixed_documents_indexes_with_progress_and_reruns_skip_all(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for n in range(50):
        (folder / f"d{n:03}.pdf").write_bytes(
            pdf_bytes([[f"Report {n} page one."], [f"Report {n} page two."]])
        )
        (folder / f"d{n:03}.html").write_text(html_page(f"Page {n}", [f"Web page number {n}."]))
        write_docx(folder / f"d{n:03}.docx", [("heading", f"Letter {n}"), ("paragraph", f"Dear reader {n}.")])
        (folder / f"d{n:03}.txt").write_text(f"Plain note {n}.", encoding="utf-8")
    with DocumentIndex(tmp_path / "i.db") as index:
        first = index.add([folder], progress=True)
        assert len(first.added) == 200
        assert "200/200" in capsys.readouterr().err
        second = index.add([folder])
        assert len(second.skipped) == 200 and not second.added and not second.replaced
        formats = sorted({d.format for d in index.documents()})
        assert formats == ["docx", "html", "pdf", "text"]


# ---- the schema of an index written by an earlier spanqa ------------------------------------------------

SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, sha256 TEXT NOT NULL, text TEXT NOT NULL, added TEXT NOT NULL
);
CREATE TABLE passages (
    id INTEGER PRIMARY KEY, doc TEXT NOT NULL, n INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL
);
CREATE INDEX passages_doc ON passages (doc, n);
CREATE VIRTUAL TABLE passage_text USING fts5(text, tokenize='unicode61 remove_diacritics 2');
INSERT INTO meta VALUES ('schema', '1'), ('passage_chars', '1000');
INSERT INTO documents VALUES
    ('old.txt', '/data/old.txt', 'abc', 'The harbour froze in 1903.', '2026-01-01T00:00:00+00:00');
INSERT INTO passages VALUES (1, 'old.txt', 0, 0, 26);
INSERT INTO passage_text (rowid, text) VALUES (1, 'The harbour froze in 1903.');
"""


def test_a_version_1_index_is_upgraded_keeping_every_document(tmp_path, tiny_bert_dir):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:
        con.executescript(SCHEMA_1)
    with DocumentIndex(db, create=False) as index:
        (info,) = index.documents()
        assert (info.id, info.source, info.format, info.pages, info.sha256) == (
            "old.txt",
            "/data/old.txt",
            "text",
            None,
            "abc",
        )
        assert index.text("old.txt") == "The harbour froze in 1903."
        (hit,) = index.search("When did the harbour freeze? froze", 5)
        assert hit.doc == "old.txt" and hit.page is None
        pred = index.answer("When did the harbour froze?", Reader.load(tiny_bert_dir), top_k=2)
        for a in pred.answers:
            assert a.citation.source == "/data/old.txt" and a.citation.page is None
        (tmp_path / "new.pdf").write_bytes(pdf_bytes(PAGES))
        index.add([tmp_path / "new.pdf"])
        assert [d.id for d in index.documents()] == ["new.pdf", "old.txt"]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    DocumentIndex(db).close()  # opening an upgraded index again changes nothing


def test_an_index_of_a_newer_spanqa_is_refused_untouched(tmp_path):
    db = tmp_path / "new.db"
    with sqlite3.connect(db) as con:
        con.executescript(SCHEMA_1.replace("('schema', '1')", "('schema', '9')"))

    def dump() -> list[str]:
        with sqlite3.connect(db) as con:
            return list(con.iterdump())

    before = dump()
    with pytest.raises(InputError, match="newer spanqa"):
        DocumentIndex(db)
    assert dump() == before


def test_ask_reads_a_pdf_context_file_and_names_the_page(tmp_path, capsys, default_model_dir):
    (tmp_path / "l.pdf").write_bytes(pdf_bytes(PAGES))
    question = "When was the lighthouse first lit?"
    assert main(["ask", "--context-file", str(tmp_path / "l.pdf"), "--json", question]) == 0
    best = json.loads(capsys.readouterr().out)["answers"][0]
    text = extract((tmp_path / "l.pdf").read_bytes(), "l.pdf").text
    assert best["text"] == "12 March 1849" == text[best["start"] : best["end"]] and best["page"] == 2
    (tmp_path / "bad.txt").write_bytes("Café".encode("latin-1"))
    assert main(["ask", "--context-file", str(tmp_path / "bad.txt"), question]) == 2
    assert capsys.readouterr().err.strip().endswith("bad.txt is not valid UTF-8 (byte 3)")
