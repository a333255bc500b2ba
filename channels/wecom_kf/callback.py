"""The 微信客服 callback: WeCom's XML envelope (WXBizMsgCrypt, ReceiveId = the CorpID), checked and opened.

WeCom verifies the URL with a GET carrying `echostr`; after that it POSTs
`<xml><ToUserName/><Encrypt/><AgentID/></xml>` with msg_signature/timestamp/nonce in the query. The only event
that matters here is `kf_msg_or_event` (document/path/94670): it carries a Token for sync_msg and the OpenKfId
of the account with news; the messages themselves are read with sync_msg. The answer is a plain "success".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from channels.wecom_crypto import CallbackRejected, MessageCrypt

MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class KfEvent:
    event: str
    token: str = ""
    open_kfid: str = ""
    corpid: str = ""


def _xml(text: str | bytes) -> ET.Element:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > MAX_BODY:
        raise CallbackRejected("callback body too large")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise CallbackRejected("DTDs are not accepted")  # no entity expansion from the network
    try:
        return ET.fromstring(raw)
    except ET.ParseError as e:
        raise CallbackRejected(f"not XML: {e}") from None


class KfCallback:
    def __init__(self, token: str, encoding_aes_key: str, corpid: str) -> None:
        self.crypt = MessageCrypt(token, encoding_aes_key, corpid)

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        return self.crypt.decrypt(msg_signature, timestamp, nonce, echostr)

    def open(self, msg_signature: str, timestamp: str, nonce: str, body: bytes) -> KfEvent:
        encrypted = (_xml(body).findtext("Encrypt") or "").strip()
        if not encrypted:
            raise CallbackRejected("no Encrypt element")
        root = _xml(self.crypt.decrypt(msg_signature, timestamp, nonce, encrypted))
        return KfEvent(
            event=(root.findtext("Event") or "").strip(),
            token=(root.findtext("Token") or "").strip(),
            open_kfid=(root.findtext("OpenKfId") or "").strip(),
            corpid=(root.findtext("ToUserName") or "").strip(),
        )
