"""The 微信客服 callback URL: `GET /wecom/kf/callback` (URL verification) and `POST` (events). A request that does
not check out is refused with 403; `kf_msg_or_event` starts a pull and is answered at once."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from channels.wecom_crypto import CallbackRejected
from channels.wecom_kf.channel import WecomKfChannel
from channels.wecom_routes import add_url_verification

log = logging.getLogger(__name__)
PATH = "/wecom/kf/callback"


def wecom_kf_router(channel: WecomKfChannel) -> APIRouter:
    router = APIRouter(tags=["wecom"])
    crypt = channel.callback
    assert crypt is not None

    add_url_verification(router, PATH, crypt, "微信客服")

    @router.post(PATH)
    async def receive(
        request: Request, msg_signature: str = "", timestamp: str = "", nonce: str = ""
    ) -> Response:
        try:
            event = crypt.open(msg_signature, timestamp, nonce, await request.body())
        except CallbackRejected as e:
            log.warning("微信客服 callback refused: %s", e)
            return PlainTextResponse("forbidden", status_code=403)
        if event.event == "kf_msg_or_event" and channel.settings.account(event.open_kfid) is not None:
            channel.pull(event.open_kfid, event.token)
        return PlainTextResponse("success")

    return router
