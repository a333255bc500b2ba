"""What both WeCom callback URLs share: WeCom's URL verification (`GET` with `echostr`), refused with 403 and one
log line when it does not check out."""

from __future__ import annotations

import logging
from typing import Protocol

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from channels.wecom_crypto import CallbackRejected

log = logging.getLogger(__name__)


class VerifiesUrl(Protocol):
    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str: ...


def add_url_verification(router: APIRouter, path: str, crypt: VerifiesUrl, label: str) -> None:
    @router.get(path)
    async def verify(
        msg_signature: str = "", timestamp: str = "", nonce: str = "", echostr: str = ""
    ) -> Response:
        try:
            return PlainTextResponse(crypt.verify_url(msg_signature, timestamp, nonce, echostr))
        except CallbackRejected as e:
            log.warning("%s URL verification refused: %s", label, e)
            return PlainTextResponse("forbidden", status_code=403)
