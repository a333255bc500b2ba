"""Form bodies read as UTF-8.

Starlette decodes the raw bytes of an `application/x-www-form-urlencoded` body as Latin-1 and only the
percent-escapes as UTF-8, so `curl -d status_notes=已补装新井盖` (raw UTF-8, as docs/tickets.md shows) arrived as
"å·²è¡¥è£…". This middleware percent-escapes every non-ASCII byte of such a body before it is parsed, so raw and
escaped UTF-8 read the same; a body that declares another charset (`charset=gbk`) is re-encoded as UTF-8 first.
It works chunk by chunk, so nothing is buffered beyond what the parser itself keeps.
"""

from __future__ import annotations

import codecs
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_TYPE = b"application/x-www-form-urlencoded"
_ESCAPE = {b: f"%{b:02X}".encode() for b in range(0x80, 0x100)}


def escape_non_ascii(data: bytes) -> bytes:
    if data.isascii():
        return data
    return b"".join(_ESCAPE.get(b, bytes((b,))) for b in data)


def _charset(content_type: bytes) -> str:
    for param in content_type.split(b";")[1:]:
        name, _, value = param.strip().partition(b"=")
        if name.strip().lower() == b"charset":
            cs = value.strip().strip(b'"').decode("latin-1")
            try:
                return codecs.lookup(cs).name
            except LookupError:
                return "utf-8"  # an unknown charset: read as the contract's UTF-8
    return "utf-8"


class Utf8FormMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"")
        if content_type.split(b";")[0].strip().lower() != FORM_TYPE:
            await self.app(scope, receive, send)
            return
        charset = _charset(content_type)
        decoder: Any = None if charset == "utf-8" else codecs.getincrementaldecoder(charset)("replace")
        # the body changes length: the old Content-Length would be wrong
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-length"]}

        async def receive_utf8() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if decoder is not None:
                    body = decoder.decode(body, final=not message.get("more_body", False)).encode("utf-8")
                message = {**message, "body": escape_non_ascii(body)}
            return message

        await self.app(scope, receive_utf8, send)
