"""A fake WeCom for the tests: the AI bot's long connection, the server API of 微信客服, and callbacks.

It speaks the protocol on its own and shares no code with `channels/`: its websocket server is Starlette on
uvicorn with the `wsproto` implementation (the code under test is a `websockets` client), and its message crypto
is written here on pycryptodome (the code under test uses wechatpy on `cryptography`), from WeCom's description
of WXBizMsgCrypt (document/path/91144), so a bug shared by both sides cannot hide.

It is strict where WeCom is: a wrong bot id or secret is refused; a second subscription kicks the first with
`disconnected_event`; a stream frame over 20480 bytes, after its stream finished, or after the message's
lifetime is refused; pings are answered unless told not to; sync_msg pages by cursor and can be told to replay
an old page or to shuffle one; send_msg keeps the 48-hour / 5-message window itself. Time is the test's clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import uvicorn
from Crypto.Cipher import AES
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

STREAM_LIMIT = 20480
MESSAGE_LIFETIME = timedelta(minutes=6)


# --- WXBizMsgCrypt, written from the documentation ----------------------------------------------------------


class FakeCrypt:
    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self.token = token
        self.key = base64.b64decode(encoding_aes_key + "=")
        self.receive_id = receive_id.encode()

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, encrypted])).encode()).hexdigest()

    def encrypt(self, plain: str) -> str:
        msg = plain.encode()
        raw = os.urandom(16) + struct.pack(">I", len(msg)) + msg + self.receive_id
        pad = 32 - len(raw) % 32
        raw += bytes([pad]) * pad
        return base64.b64encode(AES.new(self.key, AES.MODE_CBC, self.key[:16]).encrypt(raw)).decode()

    def decrypt(self, encrypted: str) -> str:
        raw = AES.new(self.key, AES.MODE_CBC, self.key[:16]).decrypt(base64.b64decode(encrypted))
        raw = raw[: -raw[-1]]
        (length,) = struct.unpack(">I", raw[16:20])
        assert raw[20 + length :] == self.receive_id, "wrong ReceiveId in a reply"
        return raw[20 : 20 + length].decode()

    def query(
        self, encrypted: str, *, timestamp: str | None = None, bad_signature: bool = False
    ) -> dict[str, str]:
        ts = timestamp or str(int(time.time()))
        nonce = secrets.token_hex(6)
        sig = self.sign(ts, nonce, encrypted)
        if bad_signature:
            sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}


def aes_key() -> str:
    """A fresh EncodingAESKey (43 characters)."""
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


def encrypt_media(data: bytes, aeskey: str) -> bytes:
    key = base64.b64decode(aeskey + "=" * (-len(aeskey) % 4))
    pad = 32 - len(data) % 32
    return AES.new(key, AES.MODE_CBC, key[:16]).encrypt(data + bytes([pad]) * pad)


# --- the fake -------------------------------------------------------------------------------------------------


@dataclass
class _BotConn:
    ws: WebSocket
    bot_id: str = ""
    subscribed: bool = False
    closed: bool = False


@dataclass
class _Stream:
    req_id: str
    content: str = ""
    finish: bool = False
    frames: int = 0


@dataclass
class KfMsg:
    msgid: str
    open_kfid: str
    external_userid: str
    send_time: int
    body: dict[str, Any]
    origin: int = 3

    def wire(self) -> dict[str, Any]:
        return {
            "msgid": self.msgid,
            "open_kfid": self.open_kfid,
            "external_userid": self.external_userid,
            "send_time": self.send_time,
            "origin": self.origin,
            **self.body,
        }


@dataclass
class KfSent:
    touser: str
    open_kfid: str
    text: str
    msgid: str


@dataclass
class FakeWecom:
    now: Callable[[], datetime]
    bot_id: str = "aib-test-bot"
    bot_secret: str = "aib-test-secret"
    corpid: str = "wwfakecorp"
    kf_secret: str = "kf-test-secret"
    answer_pings: bool = True
    frames: list[dict[str, Any]] = field(default_factory=list)  # every frame received, in order
    refused: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    streams: dict[str, _Stream] = field(default_factory=dict)
    pushed: list[dict[str, Any]] = field(default_factory=list)  # aibot_send_msg bodies accepted
    subscriptions: int = 0
    kf_log: list[KfMsg] = field(default_factory=list)
    kf_sent: list[KfSent] = field(default_factory=list)
    kf_refused: list[tuple[str, int]] = field(default_factory=list)
    replay_next: bool = False  # answer the next sync_msg from the previous page's cursor
    reverse_next: bool = False  # answer the next page in reverse order
    page_size: int = 1000
    sync_calls: int = 0
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._conns: list[_BotConn] = []
        self._callbacks: dict[str, datetime] = {}  # req_id -> when the user's message was pushed
        self._tokens: set[str] = set()
        self._token_seq = 0
        self._seq = 0
        self._last_page_start = 0
        self._windows: dict[tuple[str, str], tuple[datetime, int]] = {}
        self.server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        app = Starlette(
            routes=[
                WebSocketRoute("/", self._ws),
                Route("/cgi-bin/gettoken", self._gettoken),
                Route("/cgi-bin/kf/sync_msg", self._sync_msg, methods=["POST"]),
                Route("/cgi-bin/kf/send_msg", self._send_msg, methods=["POST"]),
                Route("/cgi-bin/media/get", self._media_get),
                Route("/aibot-media/{name}", self._aibot_media),
            ]
        )
        self.app = app

    # --- serving

    async def start(self) -> FakeWecom:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, ws="wsproto", log_level="warning", lifespan="off")
        )
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        for c in self._conns:
            if not c.closed:
                c.closed = True
                with contextlib.suppress(Exception):
                    await c.ws.close(code=1001)
        if self.server is not None:
            self.server.should_exit = True
            self.server.force_exit = True
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=5)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- the long connection

    def live(self) -> list[_BotConn]:
        return [c for c in self._conns if c.subscribed and not c.closed]

    async def _ws(self, ws: WebSocket) -> None:
        await ws.accept()
        conn = _BotConn(ws)
        self._conns.append(conn)
        try:
            while True:
                frame = json.loads(await ws.receive_text())
                self.frames.append(frame)
                await self._frame(conn, frame)
        except WebSocketDisconnect:
            pass
        finally:
            conn.closed = True

    async def _answer(self, conn: _BotConn, rid: str, errcode: int = 0, errmsg: str = "ok") -> None:
        if not conn.closed:
            await conn.ws.send_text(
                json.dumps({"headers": {"req_id": rid}, "errcode": errcode, "errmsg": errmsg})
            )

    async def _refuse(self, conn: _BotConn, frame: dict[str, Any], why: str, errcode: int = 40008) -> None:
        self.refused.append((frame, why))
        await self._answer(conn, frame["headers"]["req_id"], errcode, why)

    async def _frame(self, conn: _BotConn, frame: dict[str, Any]) -> None:
        cmd = frame.get("cmd")
        rid = frame.get("headers", {}).get("req_id", "")
        body = frame.get("body") or {}
        if cmd == "aibot_subscribe":
            if body.get("bot_id") != self.bot_id or body.get("secret") != self.bot_secret:
                await self._answer(conn, rid, 93000, "invalid bot_id or secret")
                conn.closed = True
                await conn.ws.close(code=1008)
                return
            for old in self.live():  # one connection per bot: the newest wins
                await old.ws.send_text(
                    json.dumps(
                        {
                            "cmd": "aibot_event_callback",
                            "headers": {"req_id": f"evt-{secrets.token_hex(4)}"},
                            "body": {
                                "msgid": secrets.token_hex(8),
                                "aibotid": self.bot_id,
                                "msgtype": "event",
                                "event": {"eventtype": "disconnected_event"},
                            },
                        }
                    )
                )
                old.closed = True
                await old.ws.close(code=1000)
            conn.subscribed, conn.bot_id = True, self.bot_id
            self.subscriptions += 1
            await self._answer(conn, rid)
            return
        if not conn.subscribed:
            await self._refuse(conn, frame, "not subscribed")
            return
        if cmd == "ping":
            if self.answer_pings:
                await self._answer(conn, rid)
            return
        if cmd == "aibot_respond_msg":
            await self._respond(conn, frame, rid, body)
            return
        if cmd == "aibot_send_msg":
            content = (body.get("markdown") or {}).get("content", "")
            if body.get("msgtype") != "markdown" or not body.get("chatid") or not content:
                await self._refuse(conn, frame, "bad aibot_send_msg")
            elif len(content.encode()) > STREAM_LIMIT:
                await self._refuse(conn, frame, "markdown too long")
            else:
                self.pushed.append(body)
                await self._answer(conn, rid)
            return
        await self._refuse(conn, frame, f"unknown cmd {cmd}")

    async def _respond(self, conn: _BotConn, frame: dict[str, Any], rid: str, body: dict[str, Any]) -> None:
        pushed_at = self._callbacks.get(rid)
        stream = body.get("stream") or {}
        sid = stream.get("id")
        content = stream.get("content", "")
        if pushed_at is None:
            return await self._refuse(conn, frame, "unknown req_id")
        if body.get("msgtype") != "stream" or not sid:
            return await self._refuse(conn, frame, "not a stream reply")
        if len(content.encode()) > STREAM_LIMIT:
            return await self._refuse(conn, frame, "stream content over 20480 bytes")
        if self.now() - pushed_at > MESSAGE_LIFETIME:
            return await self._refuse(conn, frame, "stream past the message's lifetime", 846604)
        st = self.streams.setdefault(sid, _Stream(rid))
        if st.req_id != rid:
            return await self._refuse(conn, frame, "stream id of another message")
        if st.finish:
            return await self._refuse(conn, frame, "stream already finished")
        st.content, st.finish = content, bool(stream.get("finish"))  # replaced, not appended
        st.frames += 1
        await self._answer(conn, rid)

    async def push(
        self,
        text: str = "",
        *,
        userid: str = "zhangsan",
        chatid: str = "wrkSFfCgAAstaff",
        chattype: str = "group",
        image: bytes | None = None,
        quote: str = "",
    ) -> str:
        """A WeCom user writes to the bot; returns the callback's req_id."""
        live = self.live()
        assert live, "no subscribed connection"
        self._seq += 1
        rid = f"cb-{self._seq}-{secrets.token_hex(3)}"
        body: dict[str, Any] = {
            "msgid": f"wmsg-{self._seq}",
            "aibotid": self.bot_id,
            "chattype": chattype,
            "from": {"userid": userid},
        }
        if chattype == "group":
            body["chatid"] = chatid
        if image is not None:
            key = aes_key()
            name = f"img{self._seq}"
            self.media[name] = (encrypt_media(image, key), "application/octet-stream")
            body.update(msgtype="image", image={"url": f"{self.api_url}/aibot-media/{name}", "aeskey": key})
        else:
            body.update(msgtype="text", text={"content": text})
        if quote:
            body["quote"] = {"msgtype": "text", "text": {"content": quote}}
        self._callbacks[rid] = self.now()
        await live[-1].ws.send_text(
            json.dumps(
                {"cmd": "aibot_msg_callback", "headers": {"req_id": rid}, "body": body}, ensure_ascii=False
            )
        )
        return rid

    async def drop(self) -> None:
        """The server closes the socket (a network cut, a WeCom restart)."""
        for c in self.live():
            c.closed = True
            await c.ws.close(code=1011)

    def stream_for(self, rid: str) -> _Stream | None:
        return next((s for s in self.streams.values() if s.req_id == rid), None)

    def frames_of(self, cmd: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("cmd") == cmd]

    async def _aibot_media(self, request: Request) -> Response:
        data, mime = self.media[request.path_params["name"]]
        return Response(data, media_type=mime)

    # --- the server API (微信客服)

    def _token_ok(self, request: Request) -> bool:
        return request.query_params.get("access_token", "") in self._tokens

    async def _gettoken(self, request: Request) -> Response:
        q = request.query_params
        if q.get("corpid") != self.corpid:
            return JSONResponse({"errcode": 40013, "errmsg": "invalid corpid"})
        if q.get("corpsecret") != self.kf_secret:
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        self._token_seq += 1
        tok = f"tok-{self._token_seq}-{secrets.token_hex(4)}"
        self._tokens.add(tok)
        return JSONResponse({"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": 7200})

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def customer_says(
        self,
        open_kfid: str,
        external_userid: str,
        text: str = "",
        *,
        location: tuple[float, float, str, str] | None = None,
        image: bytes | None = None,
    ) -> KfMsg:
        self._seq += 1
        if location is not None:
            lat, lon, name, address = location
            body: dict[str, Any] = {
                "msgtype": "location",
                "location": {"latitude": lat, "longitude": lon, "name": name, "address": address},
            }
        elif image is not None:
            mid = f"media-{self._seq}"
            self.media[mid] = (image, "image/jpeg")
            body = {"msgtype": "image", "image": {"media_id": mid}}
        else:
            body = {"msgtype": "text", "text": {"content": text}}
        m = KfMsg(f"kfmsg-{self._seq}", open_kfid, external_userid, int(self.now().timestamp()), body)
        self.kf_log.append(m)
        self._windows[(open_kfid, external_userid)] = (self.now(), 0)
        return m

    async def _sync_msg(self, request: Request) -> Response:
        if not self._token_ok(request):
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        self.sync_calls += 1
        req = await request.json()
        kfid = req.get("open_kfid", "")
        log = [m for m in self.kf_log if m.open_kfid == kfid]
        cursor = req.get("cursor", "")
        start = int(cursor[1:]) if cursor.startswith("c") else 0
        if self.replay_next:  # WeCom answers an old cursor: the previous page once more
            self.replay_next = False
            start = self._last_page_start
        self._last_page_start = start
        limit = min(int(req.get("limit", 1000)), self.page_size)
        page = log[start : start + limit]
        wire = [m.wire() for m in page]
        if self.reverse_next:
            self.reverse_next = False
            wire.reverse()
        end = start + len(page)
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "next_cursor": f"c{end}",
                "has_more": int(end < len(log)),
                "msg_list": wire,
            }
        )

    async def _send_msg(self, request: Request) -> Response:
        if not self._token_ok(request):
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        req = await request.json()
        key = (req.get("open_kfid", ""), req.get("touser", ""))
        opened = self._windows.get(key)
        if opened is None or self.now() - opened[0] >= timedelta(hours=48) or opened[1] >= 5:
            self.kf_refused.append((req.get("touser", ""), 95018))
            return JSONResponse({"errcode": 95018, "errmsg": "send msg count or time limit"})
        self._windows[key] = (opened[0], opened[1] + 1)
        msgid = req.get("msgid") or secrets.token_hex(8)
        if any(s.msgid == msgid for s in self.kf_sent):  # msgid is idempotent on WeCom's side
            return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": msgid})
        self.kf_sent.append(KfSent(key[1], key[0], (req.get("text") or {}).get("content", ""), msgid))
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def _media_get(self, request: Request) -> Response:
        if not self._token_ok(request):
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        got = self.media.get(request.query_params.get("media_id", ""))
        if got is None:
            return JSONResponse({"errcode": 40007, "errmsg": "invalid media_id"})
        return Response(got[0], media_type=got[1])

    # --- callbacks to Doorstep

    async def kf_notify(
        self,
        client: httpx.AsyncClient,
        url: str,
        crypt: FakeCrypt,
        open_kfid: str,
        *,
        token: str = "ENCsynctoken",
        bad_signature: bool = False,
    ) -> httpx.Response:
        inner = (
            f"<xml><ToUserName><![CDATA[{self.corpid}]]></ToUserName>"
            f"<CreateTime>{int(self.now().timestamp())}</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
            f"<Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>"
        )
        enc = crypt.encrypt(inner)
        outer = f"<xml><ToUserName><![CDATA[{self.corpid}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
        return await client.post(url, params=crypt.query(enc, bad_signature=bad_signature), content=outer)


class StepClock:
    """Virtual time that moves only when the test says: `sleep` waits until `advance` passes its deadline, so a
    heartbeat, a backoff or an answer time-out happens exactly when the test drives it, never on wall time."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + timedelta(seconds=seconds), fut))
        try:
            await fut
        finally:
            self._sleepers = [(d, f) for d, f in self._sleepers if f is not fut]

    def sleeping(self) -> int:
        return sum(1 for _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        target = self._now + timedelta(seconds=seconds)
        while True:
            due = sorted((d, id(f), f) for d, f in self._sleepers if d <= target and not f.done())
            if not due:
                break
            d, _, f = due[0]
            self._now = max(self._now, d)
            f.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)


async def eventually(what: str, cond: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait for a condition that depends on real loopback I/O (the fake server), with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = cond()
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
