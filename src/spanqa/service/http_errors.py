"""How the HTTP service answers errors: every one is JSON with a one-line message and the field at fault
(edge.error_body shapes it), and a user's mistake is never a 500."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from spanqa.service.edge import error_body, unparsable_body

log = logging.getLogger(__name__)


class FieldError(Exception):
    """A request the server understood but cannot answer: 422 naming the field."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class Unavailable(Exception):
    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class TimedOut(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"no answer within this server's {seconds:g} s per-request limit")


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        first = problems[0] if problems else {"field": None, "message": "invalid request"}
        body = error_body("invalid_request", first["message"], request.scope, field=first["field"])
        return JSONResponse({**body, "errors": problems}, status_code=422)

    @app.exception_handler(FieldError)
    async def unanswerable(request: Request, exc: FieldError) -> JSONResponse:
        body = error_body("invalid_request", exc.message, request.scope, field=exc.field)
        return JSONResponse({**body, "errors": [{"field": exc.field, "message": exc.message}]}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not parse the body
            field, message = unparsable_body(request.scope, exc.__cause__)
            body = error_body("invalid_request", message, request.scope, field=field)
            return JSONResponse({**body, "errors": [{"field": field, "message": message}]}, 422)
        if exc.status_code == 400 and "multipart" in str(exc.detail).lower():  # Starlette's form parser
            message = f"the upload is not valid multipart/form-data ({exc.detail})"
            body = error_body("invalid_request", message, request.scope, field="file")
            return JSONResponse({**body, "errors": [{"field": "file", "message": message}]}, 422)
        kind = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http"
        )
        body = error_body(kind, str(exc.detail), request.scope)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Unavailable)
    async def overloaded(request: Request, exc: Unavailable) -> JSONResponse:
        body = error_body("overloaded", f"server busy ({exc}); retry shortly", request.scope)
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(TimedOut)
    async def timed_out(request: Request, exc: TimedOut) -> JSONResponse:
        return JSONResponse(error_body("timeout", str(exc), request.scope), status_code=504)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s", request.url.path, exc_info=exc)
        body = error_body(
            "internal", f"internal error ({type(exc).__name__}); see the server log", request.scope
        )
        return JSONResponse(body, status_code=500)


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error as {field, message}: loc ("body", "items", 2, "question") -> items[2].question."""
    loc = [p for p in error.get("loc", ()) if p != "body"]
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        return {
            "field": None,
            "message": f"the body is not valid JSON: {detail} at character {loc[0] if loc else 0}",
        }
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    message = error.get("msg", "invalid value")
    if error.get("type") == "missing":
        message = "field required"
    elif error.get("type") == "extra_forbidden":
        message = "unknown field"
    shown = field if field.isprintable() else json.dumps(field, ensure_ascii=False)  # one-line messages
    return {"field": field or None, "message": f"{shown or 'body'}: {message}"}
