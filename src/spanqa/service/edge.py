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
BODY_KEY = "spanqa.body"  # the body's chunks as received, to name the field when it cannot be parsed
# Deeper than any request body the API takes ({"items": [{"contexts": [...]}]} is 3): where a body too deep
# to parse is reported.
_MAX_FIELD_DEPTH = 16
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
    def __init__(
        self,
        app: Any,
        max_body_bytes: int,
        uploads: dict[str, int] | None = None,
        observe: Callable[[str, str, int, float], None] | None = None,
    ) -> None:
        """`uploads`: paths that take a file as multipart/form-data instead of JSON, and their body limit.
        `observe(method, route path, status, start perf_counter)` is called once per request (metrics)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.uploads = uploads or {}
        self.observe = observe

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
        chunks: list[bytes] = []
        scope[BODY_KEY] = chunks

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
                chunks.append(message.get("body", b""))
                received += len(chunks[-1])
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
            if self.observe is not None:
                route = scope.get("route")
                self.observe(scope.get("method", ""), getattr(route, "path", "other"), status, began)
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


def unparsable_body(scope: Scope, cause: BaseException | None) -> tuple[str | None, str]:
    """(field, message) for a body that json.loads refused with `cause` other than a syntax error: bytes
    that are not UTF-8, or nesting too deep for the parser. The field is found in the raw body."""
    body = b"".join(scope.get(BODY_KEY, ()))
    text = body.decode("utf-8", "surrogateescape")
    if isinstance(cause, UnicodeDecodeError):
        bad = next((i for i, c in enumerate(text) if "\udc80" <= c <= "\udcff"), None)
        field = field_at(text, position=bad) if bad is not None else None
        where = f" (byte 0x{ord(text[bad]) - 0xDC00:02x} at character {bad})" if bad is not None else ""
        return field, f"{field or 'the body'} is not UTF-8 text{where}: send JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        field = field_at(text, max_depth=_MAX_FIELD_DEPTH)
        return field, f"{field or 'the body'} nests arrays or objects too deeply to be a request"
    return None, "the body could not be parsed as JSON"


def field_at(text: str, position: int | None = None, max_depth: int | None = None) -> str | None:
    """The request field (e.g. items[2].context) holding character `position` of a JSON text, or the field
    in which containers first nest deeper than `max_depth`. A scan, not a parse: it works on broken JSON."""
    stack: list[list[Any]] = []  # per open container: its kind, and the key or index being read
    expecting_key = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            is_key = bool(stack) and stack[-1][0] == "{" and expecting_key
            if is_key:
                stack[-1][1] = text[i + 1 : j]
                expecting_key = False
            if position is not None and i <= position <= j:
                return _field(stack)
            i = j + 1
            continue
        if c in "{[":
            if max_depth is not None and len(stack) >= max_depth:
                return _field(stack, trim_indexes=True)
            stack.append([c, None if c == "{" else 0])
            expecting_key = c == "{"
        elif c in "}]" and stack:
            stack.pop()
            expecting_key = False
        elif c == "," and stack:
            if stack[-1][0] == "[":
                stack[-1][1] += 1
            else:
                expecting_key = True
        i += 1
    return None


def _field(stack: list[list[Any]], trim_indexes: bool = False) -> str | None:
    parts = [part for _, part in stack if part is not None]
    if trim_indexes:  # [[[[...]]]] under "question" is the question's fault, not question[0][0][0]'s
        while parts and isinstance(parts[-1], int):
            parts.pop()
    field = ""
    for part in parts:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field or None
