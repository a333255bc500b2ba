"""The WeCom AI bot's long connection (企业微信智能机器人长连接): its frames and a client for them.

Frames as WeCom documents them (developer.work.weixin.qq.com/document/path/101463) and as the official SDKs send
them (wecom-aibot-python-sdk 1.0.2, @wecom/aibot-node-sdk): JSON text frames
`{"cmd": ..., "headers": {"req_id": ...}, "body": {...}}`; answers carry the request's `req_id` and `errcode`.

- `aibot_subscribe` {bot_id, secret} first; errcode 0 means subscribed, anything else is a wrong id or secret.
- `ping` every 30 s; two pings without an answer mean the connection is dead: close it and reconnect.
- `aibot_msg_callback` brings a message (msgid, chatid, chattype group|single, from.userid, text/mixed/image/
  voice/file, quote); it is answered with `aibot_respond_msg` under the callback's own req_id, msgtype `stream`
  {id, finish, content}: each frame REPLACES the content shown (markdown, at most 20480 bytes), the last one has
  finish true, and the whole stream must finish within the message's lifetime (6 minutes from the user's message
  in WeCom's documentation; we keep to 5, as the SDKs do for a req_id). Frames of one req_id are sent one at a
  time, each after the previous one's answer (the SDKs' serial reply queue: answers cannot be told apart).
- `aibot_send_msg` {chatid, msgtype markdown} speaks without a callback (alerts, summaries).
- `aibot_event_callback` with eventtype `disconnected_event`: another connection subscribed with this bot and
  WeCom dropped this one. Reconnecting would only kick the other one in turn, so the client stops and says so.

Why not the SDK itself: 1.0.2 passes a TLS context even for `ws://` (websockets refuses it, so it cannot reach a
local fake), treats neither a refused subscription nor `disconnected_event` as final (it reconnects forever and
two deployments kick each other), and waits on `asyncio.sleep`/`call_later`, so time-outs cannot be driven by an
injected clock. The framing is small; this module is it, on `websockets`. It imports nothing of Doorstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://openws.work.weixin.qq.com"
SUBSCRIBE = "aibot_subscribe"
PING = "ping"
MSG_CALLBACK = "aibot_msg_callback"
EVENT_CALLBACK = "aibot_event_callback"
RESPOND = "aibot_respond_msg"
SEND = "aibot_send_msg"
DISCONNECTED_EVENT = "disconnected_event"

STREAM_MAX_BYTES = 20480  # a stream frame's markdown content
HEARTBEAT_SECONDS = 30.0
MISSED_PONGS = 2
ACK_TIMEOUT = 5.0
SUBSCRIBE_TIMEOUT = 10.0
STREAM_LIFETIME = 5 * 60.0  # seconds from the callback within which its stream must finish
TRUNCATED = "\n\n…（内容过长，其余部分已省略）"

T = TypeVar("T")
Frame = dict[str, Any]


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real time, for a channel built without a clock (`serve`)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class WecomBotError(Exception):
    """The long connection cannot be used."""


class AuthFailed(WecomBotError):
    """WeCom refused the subscription: the bot id or secret is wrong (or the bot is not in API mode)."""


class Kicked(WecomBotError):
    """Another connection subscribed with this bot; WeCom closed this one."""


class NotConnected(WecomBotError):
    pass


class AckError(WecomBotError):
    """WeCom answered a reply or a send with an error code."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode


# --- frames -------------------------------------------------------------------------------------------------

_seq = itertools.count(1)


def req_id(prefix: str) -> str:
    return f"{prefix}_{next(_seq)}_{secrets.token_hex(4)}"


def subscribe_frame(bot_id: str, secret: str, rid: str) -> Frame:
    return {"cmd": SUBSCRIBE, "headers": {"req_id": rid}, "body": {"bot_id": bot_id, "secret": secret}}


def ping_frame(rid: str) -> Frame:
    return {"cmd": PING, "headers": {"req_id": rid}}


def clip_markdown(content: str, limit: int = STREAM_MAX_BYTES) -> str:
    """`content` within `limit` UTF-8 bytes, cut at a character boundary with a marked omission."""
    raw = content.encode("utf-8")
    if len(raw) <= limit:
        return content
    room = limit - len(TRUNCATED.encode("utf-8"))
    return raw[:room].decode("utf-8", errors="ignore") + TRUNCATED


def stream_frame(rid: str, stream_id: str, content: str, finish: bool) -> Frame:
    return {
        "cmd": RESPOND,
        "headers": {"req_id": rid},
        "body": {
            "msgtype": "stream",
            "stream": {"id": stream_id, "finish": finish, "content": clip_markdown(content)},
        },
    }


def markdown_frame(rid: str, chatid: str, content: str) -> Frame:
    return {
        "cmd": SEND,
        "headers": {"req_id": rid},
        "body": {"chatid": chatid, "msgtype": "markdown", "markdown": {"content": clip_markdown(content)}},
    }


@dataclass(frozen=True, slots=True)
class Image:
    url: str
    aeskey: str = ""  # each picture has its own key (AES-256-CBC); see media.py


@dataclass(frozen=True, slots=True)
class Callback:
    """One `aibot_msg_callback` (the same body arrives by callback URL in callback mode)."""

    req_id: str
    msgid: str
    chatid: str
    chattype: str  # group | single
    userid: str
    msgtype: str
    text: str = ""
    quote: str = ""
    images: tuple[Image, ...] = ()
    aibotid: str = ""
    received: datetime | None = None
    response_url: str = ""

    @property
    def conversation(self) -> str:
        """Where an answer goes: the group's chatid, or the user in a 1:1 chat (chatid is absent there)."""
        return self.chatid if self.chattype == "group" and self.chatid else (self.chatid or self.userid)


def _content(body: dict[str, Any]) -> tuple[str, tuple[Image, ...]]:
    kind = body.get("msgtype", "")
    if kind == "text":
        return str((body.get("text") or {}).get("content", "")), ()
    if kind == "voice":  # WeCom sends the transcript
        return str((body.get("voice") or {}).get("content", "")), ()
    if kind == "image":
        img = body.get("image") or {}
        return "", (Image(str(img.get("url", "")), str(img.get("aeskey", ""))),)
    if kind == "mixed":
        texts: list[str] = []
        images: list[Image] = []
        for item in (body.get("mixed") or {}).get("msg_item", []) or []:
            t, imgs = _content(item)
            if t:
                texts.append(t)
            images.extend(imgs)
        return "\n".join(texts), tuple(images)
    if kind == "file":
        return "", ()
    return "", ()


def parse_callback(frame_or_body: Frame, received: datetime | None = None, rid: str = "") -> Callback | None:
    """A message callback from a long-connection frame, or from a decrypted callback-mode body (then `rid` is
    empty and the body is given directly). None for what is not a message."""
    body = frame_or_body.get("body") if "body" in frame_or_body else frame_or_body
    if not isinstance(body, dict) or not body.get("msgtype"):
        return None
    text, images = _content(body)
    quote_text = ""
    if isinstance(body.get("quote"), dict):
        quote_text, _ = _content(body["quote"])
    rid = rid or str((frame_or_body.get("headers") or {}).get("req_id", ""))
    return Callback(
        req_id=rid,
        msgid=str(body.get("msgid", "")),
        chatid=str(body.get("chatid", "")),
        chattype=str(body.get("chattype", "single")),
        userid=str((body.get("from") or {}).get("userid", "")),
        msgtype=str(body["msgtype"]),
        text=text,
        quote=quote_text,
        images=images,
        aibotid=str(body.get("aibotid", "")),
        received=received,
        response_url=str(body.get("response_url", "")),
    )


# --- the client ---------------------------------------------------------------------------------------------

OnCallback = Callable[[Callback], Coroutine[Any, Any, None]]
Connect = Callable[[str], Awaitable[ClientConnection]]


async def _default_connect(url: str) -> ClientConnection:
    # our own heartbeat (the protocol's ping frame), not websockets' pings; no TLS context for ws://
    return await websockets.connect(url, ping_interval=None, close_timeout=5, max_size=2**22)


@dataclass
class _Conn:
    ws: ClientConnection
    missed: int = 0
    pending: dict[str, asyncio.Future[Frame]] = field(default_factory=dict)


class LongConnection:
    """Connect, subscribe, keep alive, reconnect with backoff; hand each message callback to `on_callback`.

    `start()` makes the first connection and raises `AuthFailed` (wrong credentials) or `WecomBotError`
    (unreachable) at once, so a misconfigured `serve` stops with one line. After that a lost connection is retried
    with exponential backoff (1 s, 2 s, … 30 s) for as long as the process runs, except after `disconnected_event`.
    All waiting (heartbeat, backoff, answer time-outs) goes through `clock.sleep`, so tests drive it.
    """

    def __init__(
        self,
        url: str,
        bot_id: str,
        secret: str,
        on_callback: OnCallback,
        clock: Clock,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        ack_timeout: float = ACK_TIMEOUT,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        connect: Connect | None = None,
    ) -> None:
        self.url = url
        self.bot_id = bot_id
        self.secret = secret
        self.on_callback = on_callback
        self.clock = clock
        self.heartbeat = heartbeat
        self.ack_timeout = ack_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._connect = connect or _default_connect
        self._conn: _Conn | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # req_id -> (lock, users)
        self._stopping = False
        self.state = "stopped"  # connecting | up | reconnecting | kicked | auth_failed | stopped
        self.error = ""
        self.connects = 0  # successful subscriptions, for health and tests
        self.connected = asyncio.Event()

    # --- lifecycle

    async def start(self) -> None:
        self._stopping = False
        self.state = "connecting"
        conn = await self._open()  # raises: the caller reports it
        self._runner = asyncio.create_task(self._run(conn), name="wecom-bot-connection")

    async def stop(self) -> None:
        self._stopping = True
        self.state = "stopped"
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        for t in list(self._tasks):
            t.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.ws.close()
            self._fail_pending(self._conn, "stopped")
            self._conn = None

    async def _within(self, aw: Coroutine[Any, Any, T] | asyncio.Future[T], seconds: float, what: str) -> T:
        """`aw`'s result, or TimeoutError after `seconds` on the injected clock."""
        task = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if task in done:
            return task.result()
        task.cancel()
        raise TimeoutError(f"no answer to {what} within {seconds:.0f} s")

    async def _open(self) -> _Conn:
        try:
            ws = await self._connect(self.url)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise WecomBotError(f"cannot reach the WeCom long connection at {self.url}: {e}") from None
        try:
            rid = req_id(SUBSCRIBE)
            await ws.send(json.dumps(subscribe_frame(self.bot_id, self.secret, rid)))
            while True:
                frame = json.loads(await self._within(ws.recv(), SUBSCRIBE_TIMEOUT, "the subscription"))
                if (frame.get("headers") or {}).get("req_id") == rid:
                    break
        except (ConnectionClosed, TimeoutError, ValueError) as e:
            await ws.close()
            raise WecomBotError(f"the WeCom long connection at {self.url} did not subscribe: {e}") from None
        if frame.get("errcode", 0) != 0:
            await ws.close()
            self.state = "auth_failed"
            self.error = f"errcode {frame.get('errcode')}: {frame.get('errmsg', '')}"
            raise AuthFailed(
                f"WeCom refused the AI bot's subscription ({self.error}): check DOORSTEP_WECOM_BOT_ID and "
                "DOORSTEP_WECOM_BOT_SECRET, and that the bot's API mode is set to long connection"
            )
        conn = self._conn = _Conn(ws)
        self.state, self.error = "up", ""
        self.connects += 1
        self.connected.set()
        log.info("WeCom AI bot subscribed on %s", self.url)
        return conn

    async def _run(self, conn: _Conn) -> None:
        attempt = 0
        while not self._stopping:
            reason = await self._serve(conn)
            self.connected.clear()
            if self._stopping or self.state == "kicked":
                return
            log.warning("WeCom long connection lost (%s); reconnecting", reason)
            while not self._stopping:
                attempt += 1
                delay = min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)
                self.state = "reconnecting"
                await self.clock.sleep(delay)
                try:
                    conn = await self._open()
                    attempt = 0
                    break
                except AuthFailed as e:  # the secret was changed in the console: say so, keep trying slowly
                    log.error("%s", e)
                except WecomBotError as e:
                    self.error = str(e)
                    log.warning("%s (attempt %d)", e, attempt)

    async def _serve(self, conn: _Conn) -> str:
        beat = asyncio.create_task(self._heartbeat(conn), name="wecom-bot-heartbeat")
        try:
            async for raw in conn.ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    log.warning("WeCom sent a frame that is not JSON; ignored")
                    continue
                if not isinstance(frame, dict):
                    continue
                self._dispatch(conn, frame)
                if self.state == "kicked":
                    with contextlib.suppress(Exception):
                        await conn.ws.close()
                    return "kicked"
            return "closed by WeCom"
        except ConnectionClosed as e:
            return f"closed: {e}"
        finally:
            beat.cancel()
            self._fail_pending(conn, "connection lost")
            if self._conn is conn:
                self._conn = None

    def _dispatch(self, conn: _Conn, frame: Frame) -> None:
        cmd = frame.get("cmd", "")
        rid = str((frame.get("headers") or {}).get("req_id", ""))
        if cmd == MSG_CALLBACK:
            cb = parse_callback(frame, self.clock.now())
            if cb is not None:
                self._spawn(self.on_callback(cb))
            return
        if cmd == EVENT_CALLBACK:
            event = ((frame.get("body") or {}).get("event") or {}).get("eventtype", "")
            if event == DISCONNECTED_EVENT:
                self.state = "kicked"
                self.error = (
                    "another connection subscribed with this AI bot and WeCom closed this one "
                    "(disconnected_event); not reconnecting: run one Doorstep per bot"
                )
                log.error("WeCom AI bot: %s", self.error)
            return
        if rid.startswith(PING):
            conn.missed = 0
            return
        fut = conn.pending.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("handling a WeCom callback failed: %r", t.exception())

        task.add_done_callback(done)

    async def _heartbeat(self, conn: _Conn) -> None:
        while True:
            await self.clock.sleep(self.heartbeat)
            if conn.missed >= MISSED_PONGS:
                log.warning("WeCom answered no ping for %d beats; closing the connection", conn.missed)
                await conn.ws.close()
                return
            conn.missed += 1
            try:
                await conn.ws.send(json.dumps(ping_frame(req_id(PING))))
            except ConnectionClosed:
                return

    @staticmethod
    def _fail_pending(conn: _Conn, why: str) -> None:
        for fut in conn.pending.values():
            if not fut.done():
                fut.set_exception(NotConnected(why))
        conn.pending.clear()

    # --- sending

    async def request(self, frame: Frame) -> Frame:
        """Send `frame` and wait for WeCom's answer to its req_id; frames of one req_id go one at a time."""
        rid = frame["headers"]["req_id"]
        lock, users = self._locks.get(rid, (asyncio.Lock(), 0))
        self._locks[rid] = (lock, users + 1)
        try:
            return await self._request_locked(lock, rid, frame)
        finally:
            lock, users = self._locks[rid]
            if users <= 1:
                del self._locks[rid]
            else:
                self._locks[rid] = (lock, users - 1)

    async def _request_locked(self, lock: asyncio.Lock, rid: str, frame: Frame) -> Frame:
        async with lock:
            conn = self._conn
            if conn is None:
                raise NotConnected(f"the WeCom long connection is {self.state}")
            fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            conn.pending[rid] = fut
            try:
                await conn.ws.send(json.dumps(frame, ensure_ascii=False))
                answer = await self._within(fut, self.ack_timeout, frame.get("cmd", "a frame"))
            except ConnectionClosed as e:
                raise NotConnected(f"connection lost while sending: {e}") from None
            finally:
                conn.pending.pop(rid, None)
        if answer.get("errcode", 0) != 0:
            raise AckError(int(answer.get("errcode", -1)), str(answer.get("errmsg", "")))
        return answer

    async def respond_stream(self, rid: str, stream_id: str, content: str, finish: bool) -> None:
        await self.request(stream_frame(rid, stream_id, content, finish))

    async def send_markdown(self, chatid: str, content: str) -> None:
        await self.request(markdown_frame(req_id(SEND), chatid, content))

    def health(self) -> dict[str, Any]:
        up = self.state == "up"
        out: dict[str, Any] = {
            "status": "up" if up else "down",
            "state": self.state,
            "connects": self.connects,
        }
        if self.error:
            out["error"] = self.error
        return out
