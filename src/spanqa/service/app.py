"""The HTTP service: `create_app(reader)` returns a FastAPI app answering questions over HTTP.

Every answer is computed on the micro-batcher's one model thread (batching.py); the event loop only parses,
validates and waits. Errors are JSON with a one-line message and the field at fault (http_errors.py
answers them): 422 for a bad request (more work than the server's limits included), 413 for a body too
large, 415 for a body that is not JSON, 503 + Retry-After when the queue is full, 504 when a question takes
longer than the per-request timeout. A user's mistake is never a 500. /metrics is Prometheus' text format;
/docs works offline (its assets come from an installed package). See docs/service.md.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

import spanqa
from spanqa.errors import InputError, check_text
from spanqa.prediction import Prediction
from spanqa.reading.reader import DEFAULT_DOC_STRIDE, Item, Reader
from spanqa.service.batching import MicroBatcher, Overloaded, ReadOptions, TooMuchWork, too_much_work
from spanqa.service.documents import add_document_routes, upload_limits
from spanqa.service.edge import EdgeMiddleware
from spanqa.service.http_errors import FieldError, TimedOut, Unavailable, add_error_handlers
from spanqa.service.metrics import CONTENT_TYPE, ServiceMetrics
from spanqa.service.schemas import (
    AnswerRequest,
    AskRequest,
    BatchOut,
    BatchRequest,
    ErrorOut,
    ModelOut,
    PredictionOut,
)
from spanqa.service.settings import ServiceSettings

# The reader's InputError messages start with the field at fault, e.g. "item 0: contexts[2] is empty".
_FIELD_IN_MESSAGE = re.compile(r"^(?:item \d+: )?(question|context|contexts\[\d+\])\b")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": what}
    for code, what in {
        413: "the request body is too large",
        415: "the body is not JSON",
        422: "invalid request: the message names the field",
        503: "overloaded: retry after the Retry-After header's seconds",
        504: "the question took longer than the server's per-request timeout",
    }.items()
}


def create_app(reader: Reader, settings: ServiceSettings | None = None, index: Any = None) -> FastAPI:
    """A FastAPI app serving `reader` (and `index`, a spanqa.retrieval.index.DocumentIndex, at /v1/ask)."""
    settings = settings or ServiceSettings()
    batcher = MicroBatcher(
        reader,
        max_batch=settings.max_batch,
        max_wait_ms=settings.batch_wait_ms,
        max_queue=settings.max_queue,
        batch_size=settings.batch_size,
        max_windows=settings.max_windows,
    )
    metrics = ServiceMetrics(batcher)
    batcher.on_reading = metrics.observe_reading

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(
        title="spanqa",
        version=spanqa.__version__,
        summary="Extractive question answering: answers are exact character spans of your text.",
        lifespan=lifespan,
        responses=_ERRORS,
        docs_url=None,  # served below from installed assets, not a CDN
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        uploads=upload_limits(settings),
        observe=metrics.observe_request,
    )
    add_error_handlers(app)
    _add_docs(app)
    model_info = _model_info(reader, settings)

    async def read(
        requests: list[tuple[Item, ReadOptions]], fields: Sequence[str], whole: str
    ) -> list[Prediction]:
        """The predictions; errors name the field (`fields` per question, `whole` for the request)."""
        try:
            results, windows = await _waiting(batcher.answer(requests, timeout=settings.timeout_s), settings)
        except TooMuchWork as e:
            raise FieldError(whole, str(e)) from None
        for prefix, result in zip(fields, results):
            if isinstance(result, InputError):
                raise _field_error(result, prefix)
            if isinstance(result, BaseException):
                raise result
        metrics.windows.observe(windows)
        return results  # type: ignore[return-value]

    @app.post("/v1/answer", response_model=PredictionOut, tags=["answers"])
    async def answer(body: AnswerRequest) -> JSONResponse:
        """Answer a question about a text (`context`) or several texts (`contexts`)."""
        _check_texts(body.contexts or [None], settings, "contexts")
        item = _item(body, settings, "")
        (pred,) = await read([item], [""], "context" if body.context is not None else "contexts")
        return JSONResponse(pred.to_dict())

    @app.post("/v1/answer/batch", response_model=BatchOut, tags=["answers"])
    async def answer_batch(body: BatchRequest) -> JSONResponse:
        """Answer several questions in one request; results come back in the same order."""
        if not body.items:
            raise FieldError("items", "items is empty: give at least one question")
        if len(body.items) > settings.max_batch_items:
            raise FieldError(
                "items", f"{len(body.items)} items; this server takes at most {settings.max_batch_items}"
            )
        fields = [f"items[{i}]." for i in range(len(body.items))]
        _check_texts([t for b in body.items for t in (b.contexts or [None])], settings, "items")
        items = [_item(b, settings, f) for b, f in zip(body.items, fields)]
        preds = await read(items, fields, "items")
        return JSONResponse({"results": [p.to_dict() for p in preds]})

    @app.post(
        "/v1/ask",
        response_model=PredictionOut,
        tags=["answers"],
        responses={404: {"model": ErrorOut, "description": "the server was started without --db"}},
    )
    async def ask(body: AskRequest) -> JSONResponse:
        """Answer a question from the document index the server was started with (`--db FILE`)."""
        if index is None:
            raise HTTPException(
                404, "this server has no document index: start it with spanqa serve --db FILE"
            )
        _check_question(body.question, settings, "question")
        options = _options(body, "")

        def run(r: Reader) -> Prediction:
            bounded = _BoundedReader(r, settings.max_windows)
            return index.answer(body.question, bounded, passages=body.passages, **options._asdict())

        try:
            pred = await _waiting(batcher.call(run, timeout=settings.timeout_s), settings)
        except InputError as e:
            raise _field_error(e, "") from None
        except TooMuchWork as e:
            raise FieldError("passages", str(e)) from None
        return JSONResponse(pred.to_dict())

    @app.get("/healthz", tags=["service"])
    async def healthz() -> JSONResponse:
        """200 while the model thread runs; 503 if it has stopped."""
        ok = batcher.alive
        body = {
            "status": "ok" if ok else "stopped",
            "queued": batcher.depth,
            "model_calls": batcher.batches,  # shared answer_batch calls so far, and the questions they read
            "questions": batcher.questions,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        """Prometheus' text format (docs/service.md lists the series)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/model", response_model=ModelOut, tags=["service"])
    async def model() -> JSONResponse:
        """The model being served, its no-answer threshold, window size, and this server's limits."""
        return JSONResponse(model_info)

    add_document_routes(app, settings, read, index)  # uploads (PDF, HTML, DOCX, text) and /v1/index

    static = resources.files("spanqa.service") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    return app


async def _waiting(work: Awaitable[Any], settings: ServiceSettings) -> Any:
    """The batcher's result, with a full queue and a timeout turned into their HTTP answers."""
    try:
        return await work
    except Overloaded as e:
        raise Unavailable(str(e), settings.retry_after_s) from None
    except TimeoutError:
        raise TimedOut(settings.timeout_s) from None


def _field_error(error: InputError, prefix: str) -> FieldError:
    match = _FIELD_IN_MESSAGE.match(str(error))
    return FieldError(prefix + match.group(1) if match else prefix.rstrip(".") or None, str(error))


def _item(body: AnswerRequest, settings: ServiceSettings, prefix: str) -> tuple[Item, ReadOptions]:
    """The reader's (question, context) pair, checked field by field so errors name the field."""
    _check_question(body.question, settings, prefix + "question")
    if (body.context is None) == (body.contexts is None):
        raise FieldError(prefix + "context", "give exactly one of context or contexts")
    if body.context is not None:
        _check_text(body.context, prefix + "context")
        total, name, context = len(body.context), prefix + "context", body.context
    else:
        if not body.contexts:
            raise FieldError(prefix + "contexts", "contexts is empty: give at least one text")
        for i, text in enumerate(body.contexts):
            _check_text(text, f"{prefix}contexts[{i}]")
        total, name, context = sum(map(len, body.contexts)), prefix + "contexts", body.contexts
    if total > settings.max_context_chars:
        raise FieldError(
            name, f"{total} characters of text; this server reads at most {settings.max_context_chars}"
        )
    return (body.question, context), _options(body, prefix)  # type: ignore[return-value]


def _options(body: AnswerRequest | AskRequest, prefix: str) -> ReadOptions:
    if body.null_threshold is not None and body.answerable_prior is not None:
        raise FieldError(
            prefix + "answerable_prior", "give answerable_prior or null_threshold (a raw threshold), not both"
        )
    return ReadOptions(body.top_k, body.max_answer_len, body.null_threshold, body.answerable_prior)


def _check_texts(texts: list[str | None], settings: ServiceSettings, field: str) -> None:
    """The number of texts in one request (a context counts one), before any is read."""
    if len(texts) > settings.max_texts:
        raise FieldError(
            field,
            f"{len(texts)} texts in one request; this server reads at most {settings.max_texts} (max_texts)",
        )


def _add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from assets installed with the fastapi-offline package: no CDN."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title} API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )


def _check_question(question: str, settings: ServiceSettings, field: str) -> None:
    _check_text(question, field)
    if len(question) > settings.max_question_chars:
        raise FieldError(
            field, f"the question has {len(question)} characters; at most {settings.max_question_chars}"
        )


def _check_text(text: str, field: str) -> None:
    try:
        check_text(text, field)
        text.encode("utf-8")
    except InputError as e:
        raise FieldError(field, str(e)) from None
    except UnicodeEncodeError as e:  # JSON can carry a lone surrogate (\ud800), which is not text
        raise FieldError(field, f"{field} holds an invalid character (lone surrogate) at {e.start}") from None


def _model_info(reader: Reader, settings: ServiceSettings) -> dict[str, Any]:
    path = reader.model_dir
    limits = asdict(settings)
    return {
        "name": str(reader.card.get("name") or (path.name if path else "unnamed")),
        "path": str(path) if path else "",
        "backend": reader.backend.name,
        "null_threshold": reader.null_threshold,
        "calibrated": reader.calibration.calibrated,
        "answerable_prior": reader.answerable_prior,
        "max_seq_len": reader.max_seq_len,
        "doc_stride": DEFAULT_DOC_STRIDE,  # the service reads with the reader's default
        "version": spanqa.__version__,
        "limits": limits,
    }


class _BoundedReader:
    """What /v1/ask's index.answer reads with: the reader, refusing more than max_windows windows before any
    forward pass (on the worker thread, like every use of the model)."""

    def __init__(self, reader: Reader, max_windows: int):
        self.reader = reader
        self.max_windows = max_windows

    def answer(self, question: str, context: str | None = None, *, contexts: Any = None, **options: Any):
        reading = self.reader.reading(
            [(question, context if contexts is None else list(contexts))], **options
        )
        if len(reading.windows) > self.max_windows:
            raise TooMuchWork(too_much_work(len(reading.windows), self.max_windows))
        while reading.step():
            pass
        return reading.predictions()[0]
