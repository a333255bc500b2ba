"""WeCom customer service (微信客服): the server API the channel uses, and the state that must outlive a restart.

- access_token: `GET /cgi-bin/gettoken?corpid&corpsecret` answers a token valid `expires_in` seconds (7200);
  it is cached, renewed a few minutes early, and renewed at once when an answer says it expired or is invalid
  (errcode 40014, 42001, 40001) — document/path/91039.
- `kf_msg_or_event` (the callback, see callback.py) only says "there is something new" and carries a Token
  valid 10 minutes; the messages are read with `POST /cgi-bin/kf/sync_msg` {cursor, token, limit, open_kfid},
  which answers `next_cursor`, `has_more` and `msg_list` (document/path/94670). `origin` 3 is the customer,
  4 the system, 5 a human servicer; only 3 and the events are ours to handle.
- replies: `POST /cgi-bin/kf/send_msg` {touser, open_kfid, msgid, msgtype text}; WeCom lets a business send at
  most 5 messages within 48 hours after the customer's last message (document/path/94677). `ReplyWindow`
  keeps that count so we refuse before WeCom does; a refused reply is recorded, never retried into the void.
- pictures: `GET /cgi-bin/media/get?media_id` (document/path/90254), bounded.

`KfState` persists, per customer-service account, the cursor and the ids of the most recent messages, and per
customer the reply window, in one JSON file replaced atomically. The cursor is written only after a page's
messages were handed on (to the app's inbox, which records them before anything else), and a message whose id
was seen is dropped: a crash between the two replays a page, which the ids absorb — nothing doubles, nothing is
skipped, also when WeCom answers an old cursor again or sends a page out of order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://qyapi.weixin.qq.com"
TOKEN_MARGIN = 300.0  # renew this many seconds before WeCom says the token expires
TOKEN_ERRORS = {40001, 40014, 42001}
AUTH_ERRORS = {40001, 40013, 40089, 40091}  # wrong secret, wrong corpid, ...
WINDOW = timedelta(hours=48)
WINDOW_MESSAGES = 5
RECENT_IDS = 2000
MAX_MEDIA_BYTES = 10 * 1024 * 1024
ORIGIN_CUSTOMER = 3


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class KfApiError(Exception):
    def __init__(self, where: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"{where}: errcode {errcode}: {errmsg}")
        self.errcode = errcode


class KfAuthError(KfApiError):
    """The corpid or the customer-service secret is wrong."""


class WindowClosed(Exception):
    """WeCom would refuse: 48 hours since the customer's last message, or 5 replies sent since it."""


@dataclass(frozen=True, slots=True)
class KfLocation:
    latitude: float
    longitude: float
    name: str = ""
    address: str = ""


@dataclass(frozen=True, slots=True)
class KfMessage:
    msgid: str
    open_kfid: str
    external_userid: str
    send_time: datetime
    msgtype: str
    origin: int = ORIGIN_CUSTOMER
    text: str = ""
    media_id: str = ""
    location: KfLocation | None = None
    event: str = ""

    @classmethod
    def parse(cls, raw: dict[str, Any], tz: Any) -> KfMessage:
        kind = str(raw.get("msgtype", ""))
        loc = None
        text = ""
        media = ""
        event = ""
        if kind == "text":
            text = str((raw.get("text") or {}).get("content", ""))
        elif kind in ("image", "voice", "video", "file"):
            media = str((raw.get(kind) or {}).get("media_id", ""))
        elif kind == "location":
            d = raw.get("location") or {}
            loc = KfLocation(
                float(d.get("latitude", 0)),
                float(d.get("longitude", 0)),
                str(d.get("name", "")),
                str(d.get("address", "")),
            )
        elif kind == "event":
            ev = raw.get("event") or {}
            event = str(ev.get("event_type", ""))
        ev = raw.get("event") or {}
        return cls(
            msgid=str(raw.get("msgid", "")),
            open_kfid=str(raw.get("open_kfid") or ev.get("open_kfid", "")),
            external_userid=str(raw.get("external_userid") or ev.get("external_userid", "")),
            send_time=datetime.fromtimestamp(int(raw.get("send_time", 0)), tz),
            msgtype=kind,
            origin=int(raw.get("origin", ORIGIN_CUSTOMER if kind != "event" else 4)),
            text=text,
            media_id=media,
            location=loc,
            event=event,
        )


class KfApi:
    def __init__(
        self,
        corpid: str,
        secret: str,
        clock: Clock,
        *,
        base_url: str = DEFAULT_BASE,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.corpid = corpid
        self.secret = secret
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.AsyncClient(timeout=10.0)
        self._token = ""
        self._expires: datetime | None = None
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    async def close(self) -> None:
        await self.client.aclose()

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            r = await self.client.request(method, f"{self.base_url}{path}", **kw)
            r.raise_for_status()
            data = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise KfApiError(path, -1, f"{type(e).__name__}: {e}") from None
        if not isinstance(data, dict):
            raise KfApiError(path, -1, "answer is not a JSON object")
        return data

    async def token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            now = self.clock.now()
            if not renew and self._token and self._expires is not None and now < self._expires:
                return self._token
            data = await self._json(
                "GET", "/cgi-bin/gettoken", params={"corpid": self.corpid, "corpsecret": self.secret}
            )
            code = int(data.get("errcode", 0))
            if code != 0:
                cls = KfAuthError if code in AUTH_ERRORS else KfApiError
                raise cls("gettoken", code, str(data.get("errmsg", "")))
            self.token_fetches += 1
            self._token = str(data["access_token"])
            life = float(data.get("expires_in", 7200))
            self._expires = now + timedelta(seconds=max(life - TOKEN_MARGIN, life / 2))
            return self._token

    async def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            token = await self.token(renew=attempt == 2)
            data = await self._json("POST", path, params={"access_token": token}, json=payload)
            code = int(data.get("errcode", 0))
            if code in TOKEN_ERRORS and attempt == 1:
                log.info("WeCom says the access token is no longer valid (%d); renewing", code)
                continue
            if code != 0:
                raise KfApiError(path, code, str(data.get("errmsg", "")))
            return data
        raise AssertionError("unreachable")

    async def sync_msg(self, open_kfid: str, cursor: str, token: str, limit: int = 1000) -> dict[str, Any]:
        payload: dict[str, Any] = {"limit": limit, "open_kfid": open_kfid}
        if cursor:
            payload["cursor"] = cursor
        if token:
            payload["token"] = token
        return await self._call("/cgi-bin/kf/sync_msg", payload)

    async def send_msg(self, touser: str, open_kfid: str, content: str, msgid: str = "") -> str:
        payload: dict[str, Any] = {
            "touser": touser,
            "open_kfid": open_kfid,
            "msgtype": "text",
            "text": {"content": content[:2048]},
        }
        if msgid:
            payload["msgid"] = msgid  # idempotent on WeCom's side: a retried send is not shown twice
        data = await self._call("/cgi-bin/kf/send_msg", payload)
        return str(data.get("msgid", msgid))

    async def media(self, media_id: str) -> bytes:
        for attempt in (1, 2):
            token = await self.token(renew=attempt == 2)
            try:
                async with self.client.stream(
                    "GET",
                    f"{self.base_url}/cgi-bin/media/get",
                    params={"access_token": token, "media_id": media_id},
                ) as r:
                    r.raise_for_status()
                    if r.headers.get("content-type", "").startswith(("application/json", "text/plain")):
                        data = json.loads(await r.aread())
                        code = int(data.get("errcode", -1))
                        if code in TOKEN_ERRORS and attempt == 1:
                            continue
                        raise KfApiError("media/get", code, str(data.get("errmsg", "")))
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in r.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_MEDIA_BYTES:
                            raise KfApiError("media/get", -1, "file too large")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except (httpx.HTTPError, ValueError) as e:
                raise KfApiError("media/get", -1, f"{type(e).__name__}: {e}") from None
        raise AssertionError("unreachable")


# --- state that outlives a restart --------------------------------------------------------------------------


@dataclass
class _Window:
    last_in: float = 0.0  # unix time of the customer's last message
    sent: int = 0  # our replies since then
    total: int = 0  # our replies ever (never reset): numbers each reply for send_msg's idempotent msgid


@dataclass
class _Account:
    cursor: str = ""
    recent: list[str] = field(default_factory=list)
    windows: dict[str, _Window] = field(default_factory=dict)


class KfState:
    """Cursors, recent message ids and reply windows, in one JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._accounts: dict[str, _Account] = {}
        self._recent_sets: dict[str, set[str]] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                for kfid, d in raw.items():
                    acc = _Account(
                        str(d.get("cursor", "")),
                        [str(x) for x in d.get("recent", [])],
                        {u: _Window(*w[:3]) for u, w in d.get("windows", {}).items()},
                    )
                    self._accounts[kfid] = acc
            except (ValueError, TypeError, AttributeError, IndexError) as e:
                # unreadable: keep it aside and start afresh rather than crash (WeCom keeps 3 days of messages)
                aside = path.with_suffix(".unreadable")
                os.replace(path, aside)
                log.error("微信客服 state %s unreadable (%s); moved to %s", path, e, aside)

    def _acc(self, kfid: str) -> _Account:
        return self._accounts.setdefault(kfid, _Account())

    def cursor(self, kfid: str) -> str:
        return self._acc(kfid).cursor

    def seen(self, kfid: str, msgid: str) -> bool:
        s = self._recent_sets.get(kfid)
        if s is None:
            s = self._recent_sets[kfid] = set(self._acc(kfid).recent)
        return msgid in s

    def mark(self, kfid: str, msgid: str) -> None:
        acc = self._acc(kfid)
        acc.recent.append(msgid)
        self._recent_sets.setdefault(kfid, set(acc.recent)).add(msgid)
        if len(acc.recent) > RECENT_IDS:
            gone = acc.recent[: len(acc.recent) - RECENT_IDS]
            del acc.recent[: len(gone)]
            self._recent_sets[kfid].difference_update(gone)

    def advance(self, kfid: str, cursor: str) -> None:
        self._acc(kfid).cursor = cursor
        self.save()

    # reply windows

    def customer_spoke(self, kfid: str, user: str, at: datetime) -> None:
        w = self._acc(kfid).windows.setdefault(user, _Window())
        if at.timestamp() >= w.last_in:
            w.last_in, w.sent = at.timestamp(), 0

    def window_open(self, kfid: str, user: str, now: datetime) -> tuple[bool, int]:
        """(open, replies left)."""
        w = self._acc(kfid).windows.get(user)
        if w is None or now.timestamp() - w.last_in >= WINDOW.total_seconds():
            return False, 0
        left = WINDOW_MESSAGES - w.sent
        return left > 0, max(left, 0)

    def replies_sent(self, kfid: str, user: str) -> int:
        w = self._acc(kfid).windows.get(user)
        return w.total if w else 0

    def replied(self, kfid: str, user: str) -> None:
        w = self._acc(kfid).windows.setdefault(user, _Window())
        w.sent += 1
        w.total += 1
        self.save()

    def save(self) -> None:
        now = max((w.last_in for a in self._accounts.values() for w in a.windows.values()), default=0.0)
        out = {
            kfid: {
                "cursor": a.cursor,
                "recent": a.recent,
                # windows closed for good are not worth keeping
                "windows": {
                    u: [w.last_in, w.sent, w.total]
                    for u, w in a.windows.items()
                    if now - w.last_in < WINDOW.total_seconds() * 2
                },
            }
            for kfid, a in self._accounts.items()
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


OnMessage = Callable[[KfMessage], Awaitable[None]]


class Puller:
    """Reads new messages of customer-service accounts with sync_msg, one pull at a time per account."""

    def __init__(self, api: KfApi, state: KfState, on_message: OnMessage, tz: Any) -> None:
        self.api = api
        self.state = state
        self.on_message = on_message
        self.tz = tz
        self._locks: dict[str, asyncio.Lock] = {}
        self._again: dict[str, str | None] = {}
        self.pages = 0

    async def pull(self, open_kfid: str, token: str = "") -> int:
        """Read everything new for `open_kfid`; returns how many messages were handed on. A call while a pull
        of the same account runs makes that pull go round once more instead of running beside it."""
        lock = self._locks.setdefault(open_kfid, asyncio.Lock())
        if lock.locked():
            self._again[open_kfid] = token
            return 0
        handed = 0
        async with lock:
            while True:
                handed += await self._drain(open_kfid, token)
                if open_kfid not in self._again:
                    return handed
                token = self._again.pop(open_kfid) or token

    async def _drain(self, open_kfid: str, token: str) -> int:
        handed = 0
        while True:
            page = await self.api.sync_msg(open_kfid, self.state.cursor(open_kfid), token)
            self.pages += 1
            msgs = [KfMessage.parse(m, self.tz) for m in page.get("msg_list", []) or []]
            for m in sorted(msgs, key=lambda m: m.send_time):  # WeCom gives no order guarantee within a page
                if not m.msgid or self.state.seen(open_kfid, m.msgid):
                    continue
                if m.origin == ORIGIN_CUSTOMER:
                    self.state.customer_spoke(open_kfid, m.external_userid, m.send_time)
                if m.origin == ORIGIN_CUSTOMER or m.msgtype == "event":
                    await self.on_message(m)  # the durable hand-off; only then is it marked seen
                    handed += 1
                self.state.mark(open_kfid, m.msgid)
                self.state.save()  # a crash after this never hands it on twice
            nxt = str(page.get("next_cursor", "") or self.state.cursor(open_kfid))
            self.state.advance(open_kfid, nxt)
            if not page.get("has_more"):
                return handed
