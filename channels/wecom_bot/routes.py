"""Callback mode's URL: `GET /wecom/bot/callback` (URL verification) and `POST` (messages and stream refreshes).
A request that does not check out is refused with 403 and logged in one line; nothing of it is handled."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from channels.wecom_bot.channel import WecomBotChannel
from channels.wecom_bot.protocol import parse_callback
from channels.wecom_crypto import CallbackRejected
from channels.wecom_routes import add_url_verification

log = logging.getLogger(__name__)
PATH = "/wecom/bot/callback"


def wecom_bot_router(channel: WecomBotChannel) -> APIRouter:
    router = APIRouter(tags=["wecom"])
    crypt = channel.callback
    assert crypt is not None

    add_url_verification(router, PATH, crypt, "WeCom AI bot")

    @router.post(PATH)
    async def receive(
        request: Request, msg_signature: str = "", timestamp: str = "", nonce: str = ""
    ) -> Response:
        try:
            body = crypt.open(msg_signature, timestamp, nonce, await request.body())
        except CallbackRejected as e:
            log.warning("WeCom AI bot callback refused: %s", e)
            return PlainTextResponse("forbidden", status_code=403)
        now = channel.clock.now()
        if body.get("msgtype") == "stream":  # WeCom asks for the stream's current content
            sid = str((body.get("stream") or {}).get("id", ""))
            return JSONResponse(crypt.seal(channel.streams.refresh(sid, now), timestamp))
        cb = parse_callback(body, now)
        if cb is None or body.get("msgtype") == "event":
            return PlainTextResponse("")
        sid = channel.accept(cb)
        return JSONResponse(crypt.seal(channel.streams.refresh(sid, now), timestamp))

    return router
