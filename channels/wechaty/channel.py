"""WeChat through a Wechaty puppet service, on the Python Wechaty SDK (PyPI `wechaty` 0.10.7, 2022).

Production Wechaty deployments reach WeChat through a *puppet service*: a gRPC server (the TypeScript
`wechaty-puppet-service`, run by a provider or by you as a gateway) that holds the logged-in account. This
channel is its client. It turns the service's events into `Message`s for the router and sends what the
throttled sender gives it; the router and handlers never see a Wechaty object.

The SDK is old; everything it needs to run today is in this module, each with its reason:

- `_prepare_sdk()` patches it before it is imported (Python 3.11 dataclass check, urllib3 2, Python 3.13).
- We use the SDK's gRPC layer (`wechaty_grpc.PuppetStub` over grpclib: no TLS, the token sent as the HTTP/2
  authority, which the TS server accepts as `Authorization: Wechaty <token>`) but not its `Wechaty` class
  nor `PuppetService.start()`: those fetch the endpoint from a discovery service without a timeout, check
  reachability with `telnetlib`, stop the remote puppet (logging the account out) on every connect, start a
  plug-in web server on port 5000 at login, swallow every start error with a `print`, sleep 60 s before a
  restart, and crash the event loop on an error event whose payload has other keys than `data`. Here:
  the endpoint is taken from config (discovery only when none is set, with a timeout), a bad token or an
  unreachable endpoint is a clear `WechatyStartError` at `start()`, and a dropped stream is reconnected
  with a short exponential backoff (0.5 s doubling to 30 s) plus a periodic `ding` to notice dead links.
- Files: the TS server sends a FileBox over 20 KB as a UUID to fetch with a `download` RPC the 2022 stub
  lacks, so attachments are read with the (deprecated, still served) chunked `MessageFileStream`; URL
  FileBoxes are downloaded by us (size-capped); images we send are shrunk to stay under gRPC's 4 MB
  message limit (the server's default) because the mock puppet and several providers cannot take the
  chunked upload.
- Locations: the stub lacks `MessageLocation`; we call it through the stub with two small message types
  defined here, and fall back to the location XML in the message text (what PadLocal-style puppets send).
- Message types arrive as the TS puppet's enum values (not the gRPC enum of the stub): see `_PuppetType`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import io
import json
import logging
import random
import re
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import betterproto

from core.channel import BaseChannel, ChannelError
from core.community import GroupConfig
from core.message import Attachment, AttachmentKind, Location, Message, split_quote, utcnow
from core.ports import JSON, Capabilities, Inbox, Joined

log = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024  # larger attachments are kept as a name (and URL) only
UNARY_LIMIT_BYTES = 4 * 1024 * 1024  # gRPC's default maximum message on the TS server (grpc-js)
SAFE_UPLOAD_BYTES = 2_800_000  # raw bytes whose base64 FileBox JSON stays well under the 4 MB limit
AT_SEPARATOR = "\u2005"  # WeChat puts a four-per-em space after an @name
QUOTE_DIVIDER = re.compile(r"\n-(?: -){5,}\s*\n")  # PadLocal's divider between a quote and the reply


async def _cancel_and_wait(tasks: Sequence[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel tasks and wait a bounded time for them to finish. Awaiting a cancelled gRPC stream task can
    block for good (the stream swallows the cancellation while it closes), and suppressing CancelledError
    around such an await would also swallow our own caller's cancellation: asyncio.wait does neither."""
    for t in tasks:
        t.cancel()
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=timeout)
        for t in stuck:
            log.warning("task %s did not stop within %.0f s; left behind", t.get_name(), timeout)


class WechatyStartError(ChannelError):
    """The puppet service cannot be used: unreachable, wrong token, TLS-only, or the SDK is broken."""


# --- the SDK, patched before import -------------------------------------------------------------------------


_sdk_ready = False


def _prepare_sdk() -> None:
    """Make the 2022 SDK importable on today's Python and libraries; idempotent."""
    global _sdk_ready
    if _sdk_ready:
        return
    # Python 3.11 refuses a dataclass field whose default is an unhashable instance; `wechaty.WechatyOptions`
    # has `puppet_options: PuppetOptions = PuppetOptions()` and PuppetOptions (a dataclass with eq) has
    # __hash__ = None. Restoring object.__hash__ makes the class definition pass; nothing hashes it.
    import wechaty_puppet.schemas.puppet as puppet_schema

    if puppet_schema.PuppetOptions.__hash__ is None:
        puppet_schema.PuppetOptions.__hash__ = object.__hash__  # type: ignore[assignment,method-assign]
    # urllib3 2 dropped `get_host`, which wechaty.user.url_link imports (pin urllib3<2, or this shim).
    import urllib3

    if not hasattr(urllib3, "get_host"):

        def get_host(url: str) -> tuple[str, str, int | None]:
            u = urllib3.util.parse_url(url)
            return u.scheme or "http", u.host or "", u.port

        urllib3.get_host = get_host  # type: ignore[attr-defined]
    # Python 3.13 removed telnetlib, which wechaty_puppet_service.utils imports for its reachability check
    # (we check reachability ourselves, with asyncio).
    if sys.version_info >= (3, 13) and "telnetlib" not in sys.modules:
        sys.modules["telnetlib"] = types.ModuleType("telnetlib")
    try:
        import wechaty  # noqa: F401  (fails here, with the reason, if the pins in pyproject.toml are not met)
        import wechaty_grpc.wechaty  # noqa: F401
    except Exception as e:  # pragma: no cover - an environment problem, reported clearly
        raise WechatyStartError(
            f"the Python Wechaty SDK cannot be imported ({type(e).__name__}: {e}); install the pinned versions: "
            "wechaty==0.10.7 wechaty-puppet==0.4.23 wechaty-puppet-service==0.8.10 wechaty-grpc==0.20.19 "
            "pyee==11.1.1 'urllib3<2'"
        ) from e
    _sdk_ready = True


# `MessageLocation` is in the server's proto but missing from the 2022 stub: its two messages, field for field
# (betterproto resolves the annotations by name in this module, so they live at module level).
@dataclass(eq=False, repr=False)
class _LocationPayload(betterproto.Message):  # type: ignore[misc]
    accuracy: float = betterproto.float_field(1)
    address: str = betterproto.string_field(2)
    latitude: float = betterproto.double_field(3)
    longitude: float = betterproto.double_field(4)
    name: str = betterproto.string_field(5)


@dataclass(eq=False, repr=False)
class _MessageLocationRequest(betterproto.Message):  # type: ignore[misc]
    id: str = betterproto.string_field(1)


@dataclass(eq=False, repr=False)
class _MessageLocationResponse(betterproto.Message):  # type: ignore[misc]
    location: _LocationPayload = betterproto.message_field(1)


class _PuppetType(IntEnum):
    """Message types as the TS server sends them: wechaty-puppet's enum, not the stub's gRPC enum."""

    UNKNOWN = 0
    ATTACHMENT = 1
    AUDIO = 2
    CONTACT = 3
    CHAT_HISTORY = 4
    EMOTICON = 5
    IMAGE = 6
    TEXT = 7
    LOCATION = 8
    MINI_PROGRAM = 9
    GROUP_NOTE = 10
    TRANSFER = 11
    RED_ENVELOPE = 12
    RECALLED = 13
    URL = 14
    VIDEO = 15
    POST = 16


class _Event(IntEnum):
    """Event types of the puppet service's event stream (the same numbers in the stub and the server)."""

    HEARTBEAT = 1
    MESSAGE = 2
    DONG = 3
    ERROR = 16
    FRIENDSHIP = 17
    ROOM_INVITE = 18
    ROOM_JOIN = 19
    ROOM_LEAVE = 20
    ROOM_TOPIC = 21
    SCAN = 22
    READY = 23
    RESET = 24
    LOGIN = 25
    LOGOUT = 26
    DIRTY = 27


_SCAN_STATUS = {0: "unknown", 1: "cancel", 2: "waiting", 3: "scanned", 4: "confirmed", 5: "timeout"}


# --- pure helpers (unit-tested without a server) -------------------------------------------------------------


def parse_quote(text: str) -> tuple[str, str]:
    """Split a quoted reply (引用) into (reply, quoted text). Returns (text, "") when it is not one.

    PadLocal-style puppets deliver a reply to a quoted message as
    「张三：明天9点到12点停水」\\n- - - - - - - - - - - - - - -\\n这个几点开始？
    and some deliver the raw appmsg XML (type 57) with a <refermsg>.
    """
    t = text.strip()
    if t.startswith("「"):
        parts = QUOTE_DIVIDER.split(t, maxsplit=1)
        if len(parts) == 2 and parts[0].rstrip().endswith("」"):
            quoted = parts[0].strip()[1:-1]
            who, sep, body = quoted.partition("：")
            if not sep:
                who, sep, body = quoted.partition(":")
            quoted_text = body if sep and len(who) <= 32 else quoted
            return parts[1].strip(), quoted_text.strip()
        reply, quoted_text = split_quote(t)  # puppets that put the quote before the reply without a divider
        if quoted_text:
            return reply, quoted_text
    if t.startswith("<") and "<refermsg>" in t:
        with contextlib.suppress(ElementTree.ParseError):
            root = ElementTree.fromstring(t)
            appmsg = root.find("appmsg") if root.tag == "msg" else root
            if appmsg is not None:
                reply = (appmsg.findtext("title") or "").strip()
                quoted = (appmsg.findtext("refermsg/content") or "").strip()
                if quoted.startswith("<"):  # a quoted link or file: its title is the readable part
                    with contextlib.suppress(ElementTree.ParseError):
                        quoted = (
                            ElementTree.fromstring(html.unescape(quoted)).findtext(".//title") or ""
                        ).strip()
                return reply, quoted
    return text, ""


def parse_location_xml(text: str) -> Location | None:
    """The location a PadLocal-style puppet puts in the text of a location message, if any."""
    t = text.strip()
    if not t.startswith("<"):
        return None
    try:
        root = ElementTree.fromstring(t)
    except ElementTree.ParseError:
        return None
    node = root if root.tag == "location" else root.find(".//location")
    if node is None:
        return None
    try:
        lat, lon = float(node.get("x", "")), float(node.get("y", ""))
    except ValueError:
        return None
    address = " ".join(p for p in (node.get("label", ""), node.get("poiname", "")) if p).strip()
    return Location(lat=lat, lon=lon, address=address)


def strip_mentions(text: str, names: Sequence[str]) -> tuple[str, bool]:
    """Remove "@name" (followed by WeChat's separator or a space) for each name; whether any was found."""
    found = False
    out = text
    for n in sorted({n for n in names if n}, key=len, reverse=True):
        pattern = re.compile("@" + re.escape(n) + r"(?:[\u2005\u0020\u00a0]|$)")
        out, count = pattern.subn("", out)
        found = found or count > 0
    return out.strip(), found


def filebox_json(data: bytes, name: str) -> str:
    """A Base64 FileBox as the TS file-box (v1, with the legacy `boxType` key) reads it."""
    return json.dumps(
        {"type": 1, "boxType": 1, "name": name, "base64": base64.b64encode(data).decode(), "size": len(data)},
        ensure_ascii=False,
    )


def shrink_image(data: bytes, limit: int = SAFE_UPLOAD_BYTES) -> tuple[bytes, str]:
    """Re-encode a picture as JPEG, smaller each round, until it fits in `limit` bytes (WeChat recompresses
    pictures anyway). Returns (data, extension). Raises ChannelError when it is not a picture."""
    from PIL import Image

    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:
        raise ChannelError(f"file of {len(data)} bytes is too large to send and is not a picture") from e
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    side, quality = max(img.size), 85
    while True:
        scaled = img.copy()
        scaled.thumbnail((side, side))
        buf = io.BytesIO()
        scaled.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= limit or side <= 320:
            return buf.getvalue(), ".jpg"
        side, quality = int(side * 0.75), max(60, quality - 5)


def _mime_for(name: str, default: str = "application/octet-stream") -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or default


def _timestamp(raw: int) -> datetime:
    if raw <= 0:
        return utcnow()
    seconds = raw / 1000 if raw > 10**11 else raw  # puppets send milliseconds or seconds
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return utcnow()


# --- the channel --------------------------------------------------------------------------------------------


@dataclass
class _Room:
    id: str
    topic: str
    key: str  # the group id the router sees: a configured group's id, or the room id


@dataclass
class _Connection:
    channel: Any  # grpclib.client.Channel
    stub: Any  # wechaty_grpc.wechaty.PuppetStub
    stream_up: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class WechatyChannel(BaseChannel):
    name = "wechaty"
    # the puppet reports room joins: the group directory greets then (bot/groups.py), through the sender
    capabilities = Capabilities(greets_on_join=True, private_chats=True)

    def __init__(
        self,
        account: str,
        *,
        endpoint: str = "",
        token: str = "",
        bot_name: str = "家门口助手",
        aliases: Sequence[str] = (),
        groups: Sequence[GroupConfig] = (),
        connect_timeout: float = 10.0,
        rpc_timeout: float = 15.0,
        keepalive_seconds: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        send_wait_seconds: float = 30.0,
    ) -> None:
        super().__init__(account)
        self.endpoint = endpoint.strip()
        self.token = token.strip()
        self.bot_name = bot_name
        self.aliases = tuple(aliases)
        self.groups = list(groups)
        self.connect_timeout = connect_timeout
        self.rpc_timeout = rpc_timeout
        self.keepalive_seconds = keepalive_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.send_wait_seconds = send_wait_seconds

        self._inbox: Inbox | None = None
        self._joined: Joined | None = None
        self._conn: _Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._stopping = False

        self.self_id = ""
        self.self_name = ""
        self.logged_in = False
        self.scan: dict[str, Any] | None = None
        self.reconnects = 0
        self.last_error = ""
        self.counts = {"received": 0, "own_filtered": 0, "skipped": 0, "sent": 0, "failed": 0}
        self._rooms: dict[str, _Room] = {}  # room id -> room
        self._keys: dict[str, str] = {}  # group key (and room id) -> conversation id
        self._names: dict[str, tuple[float, str]] = {}  # contact id -> (fetched at, name)
        self._greeted: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None:
        """Connect and open the event stream; raise `WechatyStartError` with the reason if that fails."""
        _prepare_sdk()
        self._inbox = inbox
        self._joined = joined
        self._stopping = False
        await self._connect()
        self._dispatcher = asyncio.create_task(self._dispatch_events(), name="wechaty-events")
        self._supervisor = asyncio.create_task(self._supervise(), name="wechaty-supervisor")

    async def stop(self) -> None:
        self._stopping = True
        await _cancel_and_wait([t for t in (self._supervisor, self._dispatcher) if t is not None])
        self._supervisor = self._dispatcher = None
        await self._close_connection()
        self._inbox = None

    async def wait_logged_in(self, timeout: float) -> bool:
        """For tests and the serve command's log: wait until the account is logged in."""
        deadline = time.monotonic() + timeout
        while not (self.logged_in and self._connected.is_set()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def _endpoint_host_port(self) -> tuple[str, int]:
        raw = self.endpoint
        u = urlsplit(raw if "://" in raw else f"http://{raw}")
        if not u.hostname:
            raise WechatyStartError(f"WeChat puppet service endpoint {raw!r} is not host:port")
        try:
            port = u.port or 80
        except ValueError as e:
            raise WechatyStartError(f"WeChat puppet service endpoint {raw!r} has a bad port") from e
        return u.hostname, port

    async def _discover(self) -> None:
        """No endpoint configured: ask Wechaty's discovery service for the token's address (needs the internet)."""
        import httpx

        url = f"https://api.chatie.io/v0/hosties/{quote(self.token)}"
        try:
            async with httpx.AsyncClient(timeout=self.connect_timeout) as client:
                r = await client.get(url)
            data = r.json() if r.status_code == 200 else {}
        except Exception as e:
            raise WechatyStartError(
                f"no WeChat puppet service endpoint is configured and the discovery service ({url}) cannot be "
                f"reached ({type(e).__name__}); set WECHATY_PUPPET_SERVICE_ENDPOINT=host:port"
            ) from e
        ip, port = str(data.get("ip", "")), data.get("port")
        if not ip or ip == "0.0.0.0" or not port:
            raise WechatyStartError(
                "the discovery service knows no puppet service for this token (is the token right and the "
                "service running?); set WECHATY_PUPPET_SERVICE_ENDPOINT=host:port"
            )
        self.endpoint = f"{ip}:{port}"

    async def _connect(self) -> None:
        if not self.token:
            raise WechatyStartError("no WeChat puppet service token: set WECHATY_PUPPET_SERVICE_TOKEN")
        if not self.endpoint:
            await self._discover()
        host, port = self._endpoint_host_port()
        where = f"{host}:{port}"
        try:  # fail fast and clearly instead of letting grpclib hang on a dead address
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        except (OSError, TimeoutError) as e:
            raise WechatyStartError(
                f"cannot reach the WeChat puppet service at {where} ({type(e).__name__}: {e or 'timed out'}); "
                "check WECHATY_PUPPET_SERVICE_ENDPOINT and that the service is running"
            ) from e

        from grpclib.client import Channel as GrpcChannel
        from wechaty_grpc.wechaty import PuppetStub

        channel = GrpcChannel(host=host, port=port)
        # the SDK's way of authenticating: the token as the HTTP/2 :authority; the TS server's auth reads it
        # as `Authorization: Wechaty <token>` (its monkey-patch for exactly these clients)
        channel._authority = self.token
        conn = _Connection(channel=channel, stub=PuppetStub(channel))
        try:
            await self._rpc(conn.stub.start(), "start")
            conn.tasks.append(asyncio.create_task(self._read_stream(conn), name="wechaty-stream"))
            await self._await_stream(conn, where)
        except BaseException:
            for t in conn.tasks:
                t.cancel()
            channel.close()
            raise
        self._conn = conn
        conn.tasks.append(asyncio.create_task(self._keepalive(conn), name="wechaty-keepalive"))
        self._connected.set()
        self.last_error = ""
        log.info("wechaty: connected to the puppet service at %s", where)

    async def _await_stream(self, conn: _Connection, where: str) -> None:
        """The server greets a new event stream with a heartbeat; wait for it or for the stream's error."""
        reader = conn.tasks[0]
        up = asyncio.create_task(conn.stream_up.wait())
        try:
            done, _ = await asyncio.wait(
                {reader, up}, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            up.cancel()
        if reader in done:
            exc = reader.exception()
            if exc is not None and self._is_already_streaming(exc):
                # a stale stream from our previous process is still open on the server: end it (this stops
                # and starts the puppet, as the SDK always does) and open ours
                log.warning("wechaty: the server still holds an old event stream; resetting it")
                await self._rpc(conn.stub.stop(), "stop")
                await self._rpc(conn.stub.start(), "start")
                conn.tasks[0] = asyncio.create_task(self._read_stream(conn), name="wechaty-stream")
                conn.stream_up.clear()
                await self._await_stream(conn, where)
                return
            raise self._start_error(exc, where, "event stream")
        if not done:
            raise WechatyStartError(
                f"the WeChat puppet service at {where} accepted the connection but sent no event stream in "
                f"{self.connect_timeout:.0f}s; is it a Wechaty puppet service (with TLS disabled)?"
            )

    @staticmethod
    def _is_already_streaming(exc: BaseException) -> bool:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        return isinstance(exc, GRPCError) and exc.status == Status.ALREADY_EXISTS

    def _start_error(self, exc: BaseException | None, where: str, what: str) -> WechatyStartError:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

        if isinstance(exc, GRPCError) and exc.status == Status.UNAUTHENTICATED:
            return WechatyStartError(
                f"the WeChat puppet service at {where} rejected the token ({exc.message}); "
                "check WECHATY_PUPPET_SERVICE_TOKEN"
            )
        if isinstance(exc, (StreamTerminatedError, ProtocolError, ConnectionError)):
            return WechatyStartError(
                f"the WeChat puppet service at {where} closed the connection during {what} ({exc}); the Python "
                "SDK speaks gRPC without TLS, so the service must run with TLS disabled "
                "(WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER=true)"
            )
        if isinstance(exc, TimeoutError):
            return WechatyStartError(f"the WeChat puppet service at {where} did not answer {what} in time")
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else "the stream ended"
        return WechatyStartError(f"the WeChat puppet service at {where} failed at {what} ({detail})")

    async def _rpc(self, call: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(call, self.rpc_timeout)
        except WechatyStartError:
            raise
        except Exception as e:
            raise self._start_error(e, self.endpoint, what) from e

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is None:
            return
        await _cancel_and_wait(conn.tasks)
        conn.channel.close()

    async def _supervise(self) -> None:
        """Wait for the stream to end, then reconnect with backoff until it works again."""
        while not self._stopping:
            conn = self._conn
            if conn is None:
                await asyncio.sleep(self.backoff_initial)
                continue
            try:
                await conn.tasks[0]
                self.last_error = "the event stream ended"
            except asyncio.CancelledError:
                if self._stopping:
                    raise
                self.last_error = self.last_error or "the connection was found dead"
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
            log.warning("wechaty: lost the puppet service (%s); reconnecting", self.last_error)
            await self._close_connection()
            delay = self.backoff_initial
            while not self._stopping:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                try:
                    await self._connect()
                    self.reconnects += 1
                    break
                except Exception as e:
                    self.last_error = str(e)
                    log.warning("wechaty: reconnect failed, retrying in %.1fs: %s", delay * 2, e)
                    delay = min(delay * 2, self.backoff_max)

    async def _keepalive(self, conn: _Connection) -> None:
        """A `ding` now and then: a dead link (NAT timeout, half-open TCP) ends the stream instead of hanging."""
        while True:
            await asyncio.sleep(self.keepalive_seconds)
            try:
                await asyncio.wait_for(conn.stub.ding(data="doorstep"), self.rpc_timeout)
            except Exception as e:
                self.last_error = f"keepalive failed: {type(e).__name__}: {e}"
                conn.tasks[0].cancel()
                return

    async def _read_stream(self, conn: _Connection) -> None:
        async for response in conn.stub.event():
            try:
                kind = int(response.type)
                payload = json.loads(response.payload) if response.payload else {}
            except (ValueError, TypeError):
                log.warning("wechaty: unreadable event %r", response)
                continue
            if kind == _Event.HEARTBEAT:
                conn.stream_up.set()
            elif kind in (
                _Event.MESSAGE,
                _Event.SCAN,
                _Event.LOGIN,
                _Event.LOGOUT,
                _Event.ROOM_JOIN,
                _Event.ROOM_TOPIC,
                _Event.READY,
                _Event.ERROR,
            ):
                self._events.put_nowait((kind, payload if isinstance(payload, dict) else {}))

    # --- events, handled one at a time so messages keep their order -------------------------------------

    async def _dispatch_events(self) -> None:
        while True:
            kind, payload = await self._events.get()
            try:
                await self._handle_event(kind, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wechaty: handling event %s failed", _Event(kind).name)

    async def _handle_event(self, kind: int, p: dict[str, Any]) -> None:
        if kind == _Event.MESSAGE:
            msg = await self._to_message(str(p.get("messageId", "")))
            if msg is not None and self._inbox is not None:
                self.counts["received"] += 1
                await self._inbox(msg)
        elif kind == _Event.SCAN:
            self._on_scan(p)
        elif kind == _Event.LOGIN:
            await self._on_login(str(p.get("contactId", "")))
        elif kind == _Event.LOGOUT:
            self.logged_in = False
            log.warning("wechaty: the account %s logged out (%s)", p.get("contactId", ""), p.get("data", ""))
        elif kind == _Event.ROOM_JOIN:
            await self._on_room_join(p)
        elif kind == _Event.ROOM_TOPIC:
            await self._on_room_topic(p)
        elif kind == _Event.ERROR:
            log.warning("wechaty: the puppet service reports an error: %s", p)

    def _on_scan(self, p: dict[str, Any]) -> None:
        status = _SCAN_STATUS.get(int(p.get("status", 0) or 0), "unknown")
        qrcode = str(p.get("qrcode") or "")
        self.scan = {
            "status": status,
            "qrcode": qrcode,
            "url": f"https://wechaty.js.org/qrcode/{quote(qrcode, safe='')}" if qrcode else "",
        }
        if status == "waiting" and qrcode:
            print(
                f"\n请用机器人的微信扫码登录 (scan with the bot's WeChat account): {self.scan['url']}",
                file=sys.stderr,
                flush=True,
            )
            with contextlib.suppress(Exception):
                from wechaty.utils import qr_terminal  # the SDK's own console QR

                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    qr_terminal(qrcode)
                print(out.getvalue(), file=sys.stderr, flush=True)
        log.info("wechaty: scan %s", status)

    async def _on_login(self, contact_id: str) -> None:
        self.self_id = contact_id
        self.self_name = await self._contact_name(contact_id) or self.bot_name
        self.logged_in = True
        self.scan = None
        log.info("wechaty: logged in as %s (%s)", self.self_name, contact_id)
        try:
            await self._load_rooms()
        except Exception as e:
            log.warning("wechaty: could not list the rooms: %s", e)

    async def _load_rooms(self) -> None:
        stub = self._stub()
        ids = (await asyncio.wait_for(stub.room_list(), self.rpc_timeout)).ids
        for rid in ids:
            if rid not in self._rooms:
                await self._room(rid)

    async def _on_room_join(self, p: dict[str, Any]) -> None:
        rid = str(p.get("roomId", ""))
        invited = [str(i) for i in p.get("inviteeIdList", [])]
        if not rid:
            return
        room = await self._room(rid, refresh=True)
        if self.self_id and self.self_id in invited and rid not in self._greeted:
            self._greeted.add(rid)
            log.info("wechaty: added to room %s (%s)", room.topic, rid)
            if self._joined is not None:  # the group directory greets it, through the sender
                await self._joined(room.key, self.name)

    async def _on_room_topic(self, p: dict[str, Any]) -> None:
        rid, topic = str(p.get("roomId", "")), str(p.get("newTopic", ""))
        if not rid:
            return
        room = self._rooms.get(rid)
        if room is None:
            await self._room(rid)
            return
        old = room.topic
        room.topic = topic
        if room.key == rid:  # an unconfigured room may now carry a configured group's name
            key = self._key_for(rid, topic)
            if key != rid:
                room.key = key
                self._keys[key] = rid
        log.info("wechaty: room %s renamed %r -> %r", rid, old, topic)

    # --- payloads -----------------------------------------------------------------------------------------

    def _stub(self) -> Any:
        if self._conn is None:
            raise ChannelError("not connected to the WeChat puppet service")
        return self._conn.stub

    def _key_for(self, room_id: str, topic: str) -> str:
        for g in self.groups:
            if g.id == room_id:
                return g.id
        for g in self.groups:
            if topic and topic in (g.id, g.name):
                return g.id
        return room_id

    async def _room(self, room_id: str, refresh: bool = False) -> _Room:
        room = self._rooms.get(room_id)
        if room is not None and not refresh:
            return room
        payload = await asyncio.wait_for(self._stub().room_payload(id=room_id), self.rpc_timeout)
        topic = payload.topic or ""
        if room is None:
            room = _Room(id=room_id, topic=topic, key=self._key_for(room_id, topic))
            self._rooms[room_id] = room
        else:
            room.topic = topic
        self._keys[room.key] = room_id
        self._keys[room_id] = room_id
        return room

    async def _contact_name(self, contact_id: str) -> str:
        cached = self._names.get(contact_id)
        if cached is not None and time.monotonic() - cached[0] < 600:
            return cached[1]
        try:
            p = await asyncio.wait_for(self._stub().contact_payload(id=contact_id), self.rpc_timeout)
            name = p.name or ""
        except Exception as e:
            log.debug("wechaty: no payload for contact %s: %s", contact_id, e)
            name = ""
        self._names[contact_id] = (time.monotonic(), name)
        return name

    async def _member_name(self, room_id: str, contact_id: str) -> str:
        """A person's name as the room shows it: their 群昵称 if set, else their WeChat name."""
        with contextlib.suppress(Exception):
            p = await asyncio.wait_for(
                self._stub().room_member_payload(id=room_id, member_id=contact_id), self.rpc_timeout
            )
            if p.room_alias:
                return str(p.room_alias)
            if p.name:
                return str(p.name)
        return await self._contact_name(contact_id)

    async def _to_message(self, message_id: str) -> Message | None:
        if not message_id:
            return None
        stub = self._stub()
        try:
            p = await asyncio.wait_for(stub.message_payload(id=message_id), self.rpc_timeout)
        except Exception as e:
            log.warning("wechaty: cannot read message %s: %s", message_id, e)
            self.counts["skipped"] += 1
            return None
        talker = p.from_id  # `talker_id` in today's proto, field 6
        if self.self_id and talker == self.self_id:
            self.counts["own_filtered"] += 1
            return None
        try:
            kind = _PuppetType(int(p.type))
        except ValueError:
            kind = _PuppetType.UNKNOWN
        room_id = p.room_id
        text = p.text or ""
        attachments: list[Attachment] = []
        location: Location | None = None
        quoted = ""

        if kind == _PuppetType.TEXT:
            text, quoted = parse_quote(text)
        elif kind in (_PuppetType.IMAGE, _PuppetType.ATTACHMENT, _PuppetType.VIDEO):
            att = await self._fetch_file(
                message_id, "image" if kind == _PuppetType.IMAGE else "file", p.filename or ""
            )
            if att is not None:
                attachments.append(att)
            text = ""
        elif kind == _PuppetType.LOCATION:
            location = await self._fetch_location(message_id, text)
            text = ""
        elif kind == _PuppetType.URL:
            link = await self._fetch_link(message_id)
            if link is not None:
                attachments.append(link)
                text = link.name
            else:
                text, quoted = parse_quote(text)  # some puppets deliver quotes as appmsg links
        else:  # stickers, voice, red envelopes, recalls, system notes: nothing for the router
            self.counts["skipped"] += 1
            return None

        sender_name = await (self._member_name(room_id, talker) if room_id else self._contact_name(talker))
        mentions = tuple(p.mention_ids or ())
        mentions_bot = bool(self.self_id) and self.self_id in mentions
        if room_id:
            room = await self._room(room_id)
            names = [self.self_name, self.bot_name, *self.aliases]
            if self.self_id:
                names.append(await self._member_name(room_id, self.self_id))
            stripped, typed = strip_mentions(text, names)
            if mentions_bot or typed:
                text, mentions_bot = stripped, True
            group, group_name, private = room.key, room.topic, False
        else:
            if p.to_id and self.self_id and p.to_id != self.self_id:
                self.counts["skipped"] += 1  # a 1:1 chat between two other people (some puppets relay them)
                return None
            group, group_name, private = talker, sender_name, True
            self._keys[talker] = talker
        return Message(
            id=message_id,
            channel=self.name,
            group=group,
            group_name=group_name,
            sender=talker,
            sender_name=sender_name,
            text=text,
            mentions=mentions,
            mentions_bot=mentions_bot,
            attachments=tuple(attachments),
            location=location,
            time=_timestamp(int(p.timestamp or 0)),
            quoted=quoted,
            private=private,
        )

    async def _fetch_file(self, message_id: str, kind: AttachmentKind, filename: str) -> Attachment | None:
        stub = self._stub()
        box: dict[str, Any] = {}
        try:
            resp = await asyncio.wait_for(stub.message_file(id=message_id), self.rpc_timeout)
            box = json.loads(resp.filebox or "{}")
        except Exception as e:  # some servers only serve the stream variant
            log.debug("wechaty: message_file(%s) failed, trying the stream: %s", message_id, e)
        name = str(box.get("name") or filename or ("photo.jpg" if kind == "image" else "file"))
        box_type = int(box.get("type", box.get("boxType", 0)) or 0)
        mime = _mime_for(name, "image/jpeg" if kind == "image" else "application/octet-stream")
        if box_type == 1 and box.get("base64"):  # small files come inline
            return Attachment(kind=kind, name=name, mime=mime, data=base64.b64decode(box["base64"]))
        if box_type == 2 and box.get("url"):  # a URL FileBox: the CDN address of the file
            url = str(box["url"])
            return Attachment(kind=kind, name=name, mime=mime, data=await self._download(url), url=url)
        if box_type == 3:  # a QR code FileBox (the mock's placeholder image): no file behind it
            return Attachment(kind=kind, name=name, mime=mime, url=str(box.get("qrCode", "")))
        # a UUID FileBox (over 20 KB: the server wants a `download` RPC the 2022 stub lacks) or no answer:
        # read the file through the chunked MessageFileStream instead
        try:
            streamed, streamed_name = await asyncio.wait_for(
                self._file_stream(message_id), self.rpc_timeout * 4
            )
        except Exception as e:
            log.warning("wechaty: cannot read the file of message %s: %s", message_id, e)
            return Attachment(kind=kind, name=name, mime=mime)
        name = streamed_name or name
        return Attachment(kind=kind, name=name, mime=_mime_for(name, mime), data=streamed)

    async def _file_stream(self, message_id: str) -> tuple[bytes | None, str]:
        """First chunk: the file's name; then its data. Past MAX_ATTACHMENT_BYTES the data is dropped."""
        buf = bytearray()
        name = ""
        too_big = False
        async for resp in self._stub().message_file_stream(id=message_id):
            chunk = resp.file_box_chunk
            if chunk.name:
                name = chunk.name
            if chunk.data and not too_big:
                buf += chunk.data
                if len(buf) > MAX_ATTACHMENT_BYTES:
                    too_big, buf = True, bytearray()
        return (None if too_big else bytes(buf)), name

    async def _download(self, url: str) -> bytes | None:
        import httpx

        try:
            async with (
                httpx.AsyncClient(timeout=self.rpc_timeout, follow_redirects=True) as client,
                client.stream("GET", url) as r,
            ):
                if r.status_code != 200:
                    return None
                buf = bytearray()
                async for part in r.aiter_bytes():
                    buf += part
                    if len(buf) > MAX_ATTACHMENT_BYTES:
                        return None
                return bytes(buf)
        except Exception as e:
            log.warning("wechaty: cannot download %s: %s", url, e)
            return None

    async def _fetch_location(self, message_id: str, text: str) -> Location | None:
        try:
            resp = await asyncio.wait_for(
                self._stub()._unary_unary(
                    "/wechaty.Puppet/MessageLocation",
                    _MessageLocationRequest(id=message_id),
                    _MessageLocationResponse,
                ),
                self.rpc_timeout,
            )
            loc = resp.location
            if loc.latitude or loc.longitude:
                address = " ".join(p for p in (loc.name, loc.address) if p).strip()
                return Location(lat=float(loc.latitude), lon=float(loc.longitude), address=address)
        except Exception as e:  # an older server without MessageLocation
            log.debug("wechaty: MessageLocation(%s) failed: %s", message_id, e)
        return parse_location_xml(text)

    async def _fetch_link(self, message_id: str) -> Attachment | None:
        try:
            resp = await asyncio.wait_for(self._stub().message_url(id=message_id), self.rpc_timeout)
            data = json.loads(resp.url_link or "{}")
        except Exception as e:
            log.debug("wechaty: message_url(%s) failed: %s", message_id, e)
            return None
        url = str(data.get("url") or "")
        if not url:
            return None
        title = str(data.get("title") or "")
        description = str(data.get("description") or "")
        name = title if not description else f"{title}\n{description}"
        return Attachment(kind="link", name=name, url=url)

    # --- sending ------------------------------------------------------------------------------------------

    def serves(self, group: str) -> bool:
        return group in self._keys

    async def _conversation(self, group: str) -> str:
        """The room or contact id for a group key; waits out a reconnect rather than failing at once."""
        if not self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), self.send_wait_seconds)
        if self._conn is None:
            raise ChannelError("not connected to the WeChat puppet service")
        conv = self._keys.get(group)
        if conv is None:
            raise ChannelError(f"no WeChat room or contact is known for group {group!r}")
        return conv

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None:
        conv = await self._conversation(group)
        mention_ids = [m for m in mentions if m and m != self.self_id] if "@" in conv else []
        if mention_ids:  # WeChat shows a mention only when the text carries "@name" too
            names = [await self._member_name(conv, m) or m for m in mention_ids]
            text = "".join(f"@{n}{AT_SEPARATOR}" for n in names) + text
        try:
            await asyncio.wait_for(
                self._stub().message_send_text(conversation_id=conv, text=text, mentonal_ids=mention_ids),
                self.rpc_timeout,
            )
        except Exception as e:
            self.counts["failed"] += 1
            raise ChannelError(f"sending to {group} failed: {type(e).__name__}: {e}") from e
        self.counts["sent"] += 1

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None:
        conv = await self._conversation(group)
        if len(image) > SAFE_UPLOAD_BYTES:
            image, ext = shrink_image(image)
            name = (name.rsplit(".", 1)[0] or "image") + ext
        try:
            await asyncio.wait_for(
                self._stub().message_send_file(conversation_id=conv, filebox=filebox_json(image, name)),
                self.rpc_timeout * 2,
            )
        except Exception as e:
            self.counts["failed"] += 1
            raise ChannelError(f"sending a picture to {group} failed: {type(e).__name__}: {e}") from e
        self.counts["sent"] += 1

    # --- health -------------------------------------------------------------------------------------------

    def health(self) -> JSON:
        connected = self._connected.is_set()
        if connected and self.logged_in:
            status = "up"
        elif connected and self.scan is not None:
            status = "waiting for scan"
        elif connected:
            status = "logged out"
        else:
            status = "reconnecting" if self._supervisor is not None else "down"
        return {
            "status": status,
            "endpoint": self.endpoint,
            "connected": connected,
            "logged_in": self.logged_in,
            "user": {"id": self.self_id, "name": self.self_name} if self.self_id else None,
            "scan": self.scan,
            "rooms": len(self._rooms),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            **self.counts,
        }
