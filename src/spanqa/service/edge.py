"""What every HTTP request goes through around its route: a request id, the body limits, an access log line.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware) so it adds no task per request, and so that
a body over the limit is refused while it streams in, whether or not the client sent Content-Length.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

access_log = logging.getLogger("spanqa.access")

REQUEST_ID_KEY = "spanqa.request_id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def request_id(scope: Scope) -> str | None:
    return scope.get(REQUEST_ID_KEY)


def error_body(error: str, message: str, scope: Scope, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error answer: kind, one-line message, field (when one is at fault), id."""
    return {"error": error, "message": message, **extra, "request_id": request_id(scope)}


class EdgeMiddleware:
    """`uploads`: paths that take a file as multipart/form-data instead of JSON, and their body limit."""

    def __init__(self, app: Any, max_body_bytes: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        rid = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = rid
        status = 500  # what is logged when the app raises before answering
        received = 0
        limit = self.uploads.get(scope.get("path", ""), self.max_body_bytes)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, self._too_large(scope))
            return message

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):  # no JSON built per request when nobody reads it
                access_log.info(
                    json.dumps(
                        {
                            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                            "event": "http",
                            "request_id": rid,
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "status": status,
                            "latency_ms": round((time.perf_counter() - began) * 1000, 2),
                            "bytes_in": received,
                            "client": (scope.get("client") or ("-",))[0],
                        }
                    )
                )

    def _refusal(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """Answers given before reading the body: too large by its Content-Length, or not JSON."""
        length = headers.get("content-length")
        limit = self.uploads.get(scope.get("path", ""), self.max_body_bytes)
        if length is not None and length.isdigit() and int(length) > limit:
            return JSONResponse(error_body("body_too_large", self._too_large(scope), scope), status_code=413)
        if scope.get("method") == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if scope.get("path") in self.uploads:
                if kind == "multipart/form-data":
                    return None
                message = f"send the file as multipart/form-data (got {kind or 'none'})"
                return JSONResponse(error_body("unsupported_media_type", message, scope), status_code=415)
            if kind != "application/json" and not kind.endswith("+json"):
                message = f"send the body as JSON with Content-Type: application/json (got {kind or 'none'})"
                return JSONResponse(error_body("unsupported_media_type", message, scope), status_code=415)
        return None

    def _too_large(self, scope: Scope) -> str:
        if scope.get("path") in self.uploads:  # a person chose a file: say it in the unit files are shown in
            return f"the file is larger than this server's limit of {self.uploads[scope['path']] / 1e6:g} MB"
        return f"the request body is larger than this server's limit of {self.max_body_bytes} bytes"
