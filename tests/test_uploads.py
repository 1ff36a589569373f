"""Uploaded PDF, HTML, DOCX and text files over HTTP, and cited answers from the server's index."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from documents import encrypted_pdf_bytes, html_page, pdf_bytes, write_docx
from spanqa import Reader
from spanqa.cli.main import main
from spanqa.retrieval.index import DocumentIndex
from spanqa.service.app import ServiceSettings, create_app

PAGES = [
    ["The Old Point lighthouse stands on a granite headland.", "Margaret Hale designed it."],
    ["The lighthouse was first lit on 12 March 1849.", "It burned whale oil."],
]


@pytest.fixture(scope="module")
def reader(tiny_bert_dir) -> Reader:
    return Reader.load(tiny_bert_dir)


@pytest.fixture(scope="module")
def client(reader) -> Iterator[TestClient]:
    settings = ServiceSettings(timeout_s=120.0, max_upload_bytes=300_000, max_context_chars=5_000)
    with TestClient(create_app(reader, settings), raise_server_exceptions=False) as c:
        yield c


def upload(client: TestClient, path: str, name: str, data: bytes, **form) -> dict:
    response = client.post(path, files={"file": (name, io.BytesIO(data))}, data=form)
    return {"status": response.status_code, **response.json()}


def test_extract_gives_the_text_format_and_pages(client):
    out = upload(client, "/v1/documents/extract", "l.pdf", pdf_bytes(PAGES))
    assert out["status"] == 200 and out["format"] == "pdf" and out["name"] == "l.pdf"
    assert [out["text"][a:b] for a, b in out["pages"]] == ["\n".join(p) for p in PAGES]
    assert out["chars"] == len(out["text"])
    html = upload(client, "/v1/documents/extract", "p.html", html_page("Title", ["Body text."]).encode())
    assert html["text"] == "Title\n\nBody text." and html["pages"] is None and html["format"] == "html"


def test_answer_over_an_uploaded_file_with_pages(client, tmp_path):
    form = {"question": "When was the lighthouse first lit?", "top_k": "5", "return_text": "true"}
    out = upload(client, "/v1/answer/file", "l.pdf", pdf_bytes(PAGES), **form)
    assert out["status"] == 200 and out["answers"] and out["document"]["format"] == "pdf"
    text, pages = out["document"]["text"], out["document"]["pages"]
    for a in out["answers"]:
        assert text[a["start"] : a["end"]] == a["text"]
        start, end = pages[a["page"] - 1]
        assert start <= a["start"] < end
    write_docx(tmp_path / "h.docx", [("heading", "Hire"), ("paragraph", "A skiff costs 40 euros.")])
    docx = upload(client, "/v1/answer/file", "h.docx", (tmp_path / "h.docx").read_bytes(), question="Cost?")
    assert docx["status"] == 200 and docx["document"]["format"] == "docx" and "text" not in docx["document"]
    assert all("page" not in a for a in docx["answers"])


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("latin1.txt", "Café au lait".encode("latin-1"), "file latin1.txt is not valid UTF-8 (byte 3)"),
        ("secret.pdf", encrypted_pdf_bytes(PAGES), "secret.pdf: the PDF is encrypted"),
        ("scan.pdf", pdf_bytes([None]), "scan.pdf: the PDF has no text layer"),
        ("s.html", b"<html><body><script>x()</script></body></html>", "s.html: the HTML page has no text"),
        ("empty.txt", b"", "empty.txt: empty"),
        (
            "long.txt",
            b"word " * 2000,
            "long.txt: its text has 10,000 characters; this server reads at most 5,000",
        ),
    ],
)
def test_an_unusable_upload_is_a_422_naming_the_file(client, name, data, message):
    for path, form in (("/v1/documents/extract", {}), ("/v1/answer/file", {"question": "Who?"})):
        out = upload(client, path, name, data, **form)
        assert out["status"] == 422 and out["field"] == "file" and out["message"].startswith(message), out


def test_the_same_non_utf8_message_as_the_command_line(client, tmp_path, capsys):
    data = "naïve".encode("latin-1")
    (tmp_path / "n.txt").write_bytes(data)
    assert main(["index", "add", "--db", str(tmp_path / "i.db"), str(tmp_path / "n.txt")]) == 2
    cli = capsys.readouterr().err.strip()
    http = upload(client, "/v1/documents/extract", "n.txt", data)["message"]
    assert cli.endswith(http.removeprefix("file ")) and "not valid UTF-8 (byte 2)" in http


def test_upload_limits_and_form_fields_are_named(client):
    big = upload(client, "/v1/documents/extract", "big.pdf", b"%PDF-" + b"0" * 400_000)
    assert big["status"] == 413 and "limit of 0.3 MB" in big["message"]
    as_json = client.post("/v1/documents/extract", json={"file": "x"})
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["message"]
    no_question = upload(client, "/v1/answer/file", "a.txt", b"Some text.", question=" ")
    assert no_question["status"] == 422 and no_question["field"] == "question"
    bad_k = upload(client, "/v1/answer/file", "a.txt", b"Some text.", question="Who?", top_k="0")
    assert bad_k["status"] == 422 and bad_k["field"] == "top_k"
    no_file = client.post("/v1/answer/file", data={"question": "Who?"}, files={"other": ("x", b"y")})
    assert no_file.status_code == 422 and no_file.json()["field"] == "file"


def test_index_summary_and_cited_answers_from_ask(reader, tmp_path):
    with TestClient(create_app(reader, ServiceSettings(timeout_s=120.0))) as plain:
        assert plain.get("/v1/index").status_code == 404
    (tmp_path / "l.pdf").write_bytes(pdf_bytes(PAGES))
    (tmp_path / "p.html").write_text(html_page("Harbour", ["The harbour froze in 1903."]))
    with DocumentIndex(tmp_path / "i.db") as index:
        index.add([tmp_path])
        with TestClient(create_app(reader, ServiceSettings(timeout_s=120.0), index=index)) as c:
            assert c.get("/v1/index").json() == {"documents": 2, "formats": {"html": 1, "pdf": 1}}
            out = c.post("/v1/ask", json={"question": "When was the lighthouse first lit?", "top_k": 5})
            assert out.status_code == 200
            for a in out.json()["answers"]:
                full = index.text(a["doc"])
                assert full[a["start"] : a["end"]] == a["text"]
                assert full[a["passage_start"] : a["passage_end"]] == a["passage_text"]
                assert a["source"] == str(tmp_path / a["doc"])
                if a["doc"] == "l.pdf":
                    start, end = index.pages("l.pdf")[a["page"] - 1]
                    assert start <= a["start"] < end and a["format"] == "pdf"
                else:
                    assert "page" not in a and a["format"] == "html"
