"""Documents over HTTP: uploaded PDF, HTML, DOCX and text files, and what the server's index holds.

- POST /v1/documents/extract (multipart: file): the file's text as spanqa reads it, its format and page map;
  the web page shows this text and asks /v1/answer about it.
- POST /v1/answer/file (multipart: file, question, options): answers over the file's text in one request;
  offsets index the extracted text (returned with return_text=true), and answers in a PDF carry their page.
- GET /v1/index: how many documents the server's index (`spanqa serve --db FILE`) holds, by format.

A file that cannot be read (encrypted or damaged PDF, zip bomb, not UTF-8...) is a 422 naming the `file`
field with the same one-line message as `spanqa index add`. Text extraction runs in worker threads, at most
two at once, so the event loop keeps answering while a large PDF is read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from spanqa.errors import InputError
from spanqa.retrieval.formats import Extracted, extract, page_of
from spanqa.service.batching import ReadOptions
from spanqa.service.edge import error_body
from spanqa.service.schemas import MAX_ANSWER_TOKENS, MAX_TOP_K
from spanqa.service.settings import ServiceSettings

log = logging.getLogger(__name__)

UPLOAD_PATHS = ("/v1/documents/extract", "/v1/answer/file")
_EXTRACTING_AT_ONCE = 2
_FILE = "a PDF, HTML, DOCX or UTF-8 text file"

Read = Callable[[list[tuple[Any, ReadOptions]], list[str], str], Awaitable[list[Any]]]


class UploadError(Exception):
    """An upload the server cannot use: 422 naming the form field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def upload_limits(settings: ServiceSettings) -> dict[str, int]:
    """The body limit of each upload path, for the edge middleware."""
    return dict.fromkeys(UPLOAD_PATHS, settings.max_upload_bytes)


def add_document_routes(app: FastAPI, settings: ServiceSettings, read: Read, index: Any = None) -> None:
    """Register the upload and index routes; `read` answers (item, options) pairs as /v1/answer does."""
    try:
        import python_multipart  # noqa: F401  (FastAPI parses forms with it)
    except ImportError:
        log.warning("file uploads are off: they need python-multipart (pip install python-multipart)")
        _add_index_route(app, index)
        return
    from anyio import CapacityLimiter, to_thread

    limiter = CapacityLimiter(_EXTRACTING_AT_ONCE)

    async def extracted(file: UploadFile) -> Extracted:
        name = file.filename or "upload"
        data = await file.read()
        if not data:
            raise UploadError("file", f"{name}: empty (no text)")
        try:
            result = await to_thread.run_sync(
                lambda: extract(data, name, max_pages=settings.max_upload_pages), limiter=limiter
            )
        except InputError as e:
            raise UploadError("file", str(e)) from None
        if not result.text.strip():
            raise UploadError("file", f"{name}: empty (no text)")
        if len(result.text) > settings.max_context_chars:
            raise UploadError(
                "file",
                f"{name}: its text has {len(result.text):,} characters; this server reads at most "
                f"{settings.max_context_chars:,}",
            )
        return result

    @app.post("/v1/documents/extract", tags=["documents"])
    async def extract_document(file: Annotated[UploadFile, File(description=_FILE)]) -> JSONResponse:
        """The text of an uploaded file as spanqa reads it (the text answers' offsets index), its format,
        and for a PDF each page's [start, end) character range."""
        result = await extracted(file)
        return JSONResponse({**_describe(file.filename, result), "text": result.text})

    @app.post("/v1/answer/file", tags=["answers"])
    async def answer_file(
        file: Annotated[UploadFile, File(description=_FILE)],
        question: Annotated[str, Form(description="the question")],
        top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K, description="how many answers, best first")] = 1,
        max_answer_len: Annotated[
            int, Form(ge=1, le=MAX_ANSWER_TOKENS, description="longest answer, in tokens")
        ] = 30,
        null_threshold: Annotated[
            float | None,
            Form(allow_inf_nan=False, description="'no answer' below this (default: the model's)"),
        ] = None,
        answerable_prior: Annotated[
            float | None,
            Form(
                gt=0, lt=1, description="how likely a question is answered by the file (default: the model's)"
            ),
        ] = None,
        return_text: Annotated[
            bool, Form(description="include the extracted text the offsets index")
        ] = False,
    ) -> JSONResponse:
        """Answer a question about an uploaded file. Offsets index the file's extracted text; answers in a
        PDF carry the page holding them."""
        if not question.strip():
            raise UploadError("question", "question is empty")
        if len(question) > settings.max_question_chars:
            raise UploadError(
                "question",
                f"the question has {len(question)} characters; at most {settings.max_question_chars}",
            )
        if null_threshold is not None and answerable_prior is not None:
            raise UploadError("answerable_prior", "give answerable_prior or null_threshold, not both")
        result = await extracted(file)
        options = ReadOptions(top_k, max_answer_len, null_threshold, answerable_prior)
        (pred,) = await read([((question, result.text), options)], [""], "file")
        body = pred.to_dict()
        for answer in body["answers"]:
            page = page_of(result.pages, answer["start"])
            if page is not None:
                answer["page"] = page
        body["document"] = _describe(file.filename, result)
        if return_text:
            body["document"]["text"] = result.text
        return JSONResponse(body)

    @app.exception_handler(UploadError)
    async def unusable(request: Request, exc: UploadError) -> JSONResponse:
        body = error_body("invalid_request", exc.message, request.scope, field=exc.field)
        return JSONResponse({**body, "errors": [{"field": exc.field, "message": exc.message}]}, 422)

    _add_index_route(app, index)


def _add_index_route(app: FastAPI, index: Any) -> None:
    @app.get("/v1/index", tags=["documents"])
    async def index_summary(request: Request) -> JSONResponse:
        """How many documents the server's index holds, by format (404 when it was started without --db):
        the web page offers to ask the index when there is one."""
        if index is None:
            message = "this server has no document index: start it with spanqa serve --db FILE"
            return JSONResponse(error_body("not_found", message, request.scope), status_code=404)
        formats = index.formats()
        return JSONResponse({"documents": sum(formats.values()), "formats": formats})


def _describe(name: str | None, result: Extracted) -> dict[str, Any]:
    pages = [list(p) for p in result.pages] if result.pages is not None else None
    return {"name": name or "upload", "format": result.format, "chars": len(result.text), "pages": pages}
