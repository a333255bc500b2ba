"""The AI bot's callback mode (API 模式 with a URL), for deployments with a public address.

WeCom verifies the URL with a GET carrying `echostr` (decrypt it, answer the plaintext within a second), then
POSTs each message as JSON `{"encrypt": ...}` with msg_signature/timestamp/nonce in the query; the passive reply
is JSON `{"encrypt", "msgsignature", "timestamp", "nonce"}` (document/path/101033; ReceiveId is "" for an
internal bot). A message is answered with an (empty) stream at once; WeCom then POSTs `msgtype: stream` refresh
callbacks with the stream's id until the reply says finish, for at most 6 minutes from the user's message
(document/path/100719, "流式消息刷新"). `StreamBook` holds each stream's current content between refreshes.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels.wecom_bot.protocol import STREAM_LIFETIME, clip_markdown
from channels.wecom_crypto import CallbackRejected, MessageCrypt, nonce


class BotCallback:
    def __init__(self, token: str, encoding_aes_key: str) -> None:
        self.crypt = MessageCrypt(token, encoding_aes_key, "")

    def verify_url(self, msg_signature: str, timestamp: str, nonce_: str, echostr: str) -> str:
        return self.crypt.decrypt(msg_signature, timestamp, nonce_, echostr)

    def open(self, msg_signature: str, timestamp: str, nonce_: str, body: bytes) -> dict[str, Any]:
        try:
            envelope = json.loads(body)
            encrypted = str(envelope["encrypt"])
        except (ValueError, KeyError, TypeError):
            raise CallbackRejected("not a WeCom JSON envelope") from None
        plain = self.crypt.decrypt(msg_signature, timestamp, nonce_, encrypted)
        try:
            msg = json.loads(plain)
        except ValueError:
            raise CallbackRejected("decrypted callback is not JSON") from None
        if not isinstance(msg, dict):
            raise CallbackRejected("decrypted callback is not a JSON object")
        return msg

    def seal(self, payload: dict[str, Any], timestamp: str) -> dict[str, Any]:
        n = nonce()
        encrypted, sig = self.crypt.encrypt(json.dumps(payload, ensure_ascii=False), timestamp, n)
        return {"encrypt": encrypted, "msgsignature": sig, "timestamp": int(timestamp), "nonce": n}


def stream_payload(stream_id: str, content: str, finish: bool) -> dict[str, Any]:
    return {
        "msgtype": "stream",
        "stream": {"id": stream_id, "finish": finish, "content": clip_markdown(content)},
    }


@dataclass
class _Stream:
    conversation: str
    opened: datetime
    content: str = ""
    finish: bool = False


class StreamBook:
    """Open streams of callback mode: the channel fills them, WeCom's refresh callbacks read them."""

    def __init__(self, lifetime: float = STREAM_LIFETIME) -> None:
        self.lifetime = timedelta(seconds=lifetime)
        self._streams: dict[str, _Stream] = {}

    def open(self, conversation: str, now: datetime) -> str:
        self._expire(now)
        sid = f"ds{secrets.token_hex(8)}"
        self._streams[sid] = _Stream(conversation, now)
        return sid

    def _expire(self, now: datetime) -> None:
        # refreshes stop after WeCom's limit; a finished stream is kept a little for a late refresh
        for sid in [s for s, st in self._streams.items() if now - st.opened > self.lifetime * 2]:
            del self._streams[sid]

    def waiting(self, conversation: str, now: datetime) -> str | None:
        """The oldest unfinished stream of `conversation` still within its lifetime."""
        for sid, st in self._streams.items():
            if st.conversation == conversation and not st.finish and now - st.opened < self.lifetime:
                return sid
        return None

    def fill(self, sid: str, content: str, finish: bool = True) -> None:
        st = self._streams[sid]
        st.content, st.finish = content, finish

    def refresh(self, sid: str, now: datetime) -> dict[str, Any]:
        st = self._streams.get(sid)
        if st is None:  # unknown or long gone: end it rather than leave WeCom polling
            return stream_payload(sid, "", True)
        if not st.finish and now - st.opened >= self.lifetime:
            st.finish = True  # within the stream's lifetime, always: an empty end beats a dangling stream
        return stream_payload(sid, st.content, st.finish)
