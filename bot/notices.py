"""The notice service: staff notices kept in the store and delivered to each group once, through the throttled
sender, surviving restarts.

A notice (`notices`) is created from chat (`/通知`, after the sender confirms) or the admin API. When it is due
(at once, at its time, or at each run of its repeat) `fire_due` writes one `notice_deliveries` row per group for
that run, in the same transaction that moves the notice's `next_run_at` on: a unique key (notice, run, group)
and a compare-and-set on `next_run_at` make sure a run is fired once, even by two processes on one database.

Each delivery row goes queued -> sending -> sent | failed (| unknown | cancelled):

1. the pump waits until the sender can send at once (the per-account interval with jitter and the per-group
   limit, as observed through the sender's hooks), so that
2. the row is *claimed* (`queued -> sending`, with this process's id and the time) just before
3. the reply is handed to the ThrottledSender, which sends it within the same limits and retries a failed
   platform send a few times; then
4. the row is *marked* sent (with the time), or put back in the queue with a back-off, or failed after
   `MAX_ROUNDS` rounds.

**At most once.** The only crash window is between the claim (2) and the mark (4): the platform call itself
(plus the sender's own retries of a failed call). A row left `sending` by a process that died cannot tell
whether WeChat got the message, so after a lease (`CLAIM_LEASE_SECONDS`) another process marks it `unknown`
and does *not* resend it: a resident group getting a notice twice is worse than staff seeing "状态不明" in the
delivery report and choosing to resend (`resend`, the admin API's `POST /admin/notices/{id}/resend`). Rows still
`queued` when a process dies are simply sent by the next one, so a restart mid-delivery finishes the notice.

"收到请回复1": for a notice that asks for it, the delivery report counts, per group, the residents who answered
"1" (or 收到) after the notice reached the group, from the messages the router records.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, select, update

from bot.config import Config
from bot.groups import select_groups, select_targets
from bot.ratelimit import SlidingWindow
from bot.schedules import Schedule, next_cron, parse_when, split_schedule
from core.community import GroupInfo, Scope, StaffMember
from core.errors import NoticeError
from core.message import Reply, new_id
from core.ports import Clock, Groups, NoticeDraft, Sender
from store import Store
from store.models import InboundMessage, Notice, NoticeDelivery

log = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = 300.0  # a row `sending` for longer than this was claimed by a process that died
RETRY_BACKOFF_SECONDS = (60.0, 300.0)  # before the 2nd and the 3rd round of a failed delivery
MAX_ROUNDS = 3
MAX_TEXT = 1500
ACK_WINDOW = timedelta(days=3)
ACK_REQUEST = "收到请回复1"
_ACK_ASKED = re.compile(r"收到(?:请|麻烦)?回复\s*[“\"'「]?\s*[1１]")
_ACK_WORDS = {"1", "收到", "已收到", "收到了", "收到1", "1收到", "好的收到", "收到收到", "ok收到", "11"}
_MENTION = re.compile(r"@\S+\s*")
_NOT_WORD = re.compile(r"[\s\W_]+", re.UNICODE)

STATUS_NAMES = {
    "queued": "排队中",
    "sending": "发送中",
    "sent": "已送达",
    "failed": "发送失败",
    "unknown": "状态不明",
    "cancelled": "已取消",
    "scheduled": "待发送",
    "done": "已完成",
}
UNKNOWN_NOTE = "发送过程中程序重启，不确定是否已送达；为避免重复，不自动重发"


def is_ack(text: str) -> bool:
    t = unicodedata.normalize("NFKC", _MENTION.sub("", text)).lower()
    return _NOT_WORD.sub("", t) in _ACK_WORDS


def asks_ack(text: str) -> bool:
    return bool(_ACK_ASKED.search(unicodedata.normalize("NFKC", text)))


def render(text: str, signature: str, ask_ack: bool) -> str:
    """The notice as residents read it."""
    body = text.strip()
    if ask_ack and not asks_ack(body):
        body += f"（{ACK_REQUEST}）"
    return f"【社区通知】{body}" + (f"\n——{signature}" if signature else "")


# --- what staff are shown ------------------------------------------------------------------------------------


@dataclass
class Draft:
    """A notice before it is confirmed: what the preview shows."""

    text: str
    targets: list[str]
    groups: list[GroupInfo]
    schedule: Schedule
    ask_ack: bool
    signature: str = ""

    @property
    def rendered(self) -> str:
        return render(self.text, self.signature, self.ask_ack)

    @property
    def group_count(self) -> int:
        return len(self.groups)

    @property
    def immediate(self) -> bool:
        return self.schedule.at is None

    @property
    def when(self) -> str:
        return self.schedule.label

    def to_data(self) -> dict[str, object]:
        """JSON data, kept in the staff member's conversation until they confirm."""
        at = self.schedule.at
        return {
            "text": self.text,
            "targets": list(self.targets),
            "groups": [asdict(g) for g in self.groups],
            "schedule": {
                "at": at.isoformat() if at else None,
                "cron": self.schedule.cron,
                "label": self.schedule.label,
            },
            "ask_ack": self.ask_ack,
            "signature": self.signature,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Draft:
        sched = data.get("schedule") or {}
        at = sched.get("at")
        return cls(
            text=str(data.get("text", "")),
            targets=[str(t) for t in data.get("targets") or []],
            groups=[GroupInfo(**{**g, "tags": tuple(g.get("tags") or ())}) for g in data.get("groups") or []],
            schedule=Schedule(
                at=datetime.fromisoformat(at) if at else None,
                cron=str(sched.get("cron", "")),
                label=str(sched.get("label", "立即发送")),
            ),
            ask_ack=bool(data.get("ask_ack")),
            signature=str(data.get("signature", "")),
        )

    def group_names(self, limit: int = 10) -> str:
        names = [g.name for g in self.groups]
        shown = "、".join(names[:limit])
        return shown + (f"等{len(names)}个群" if len(names) > limit else "")

    def preview(self, timeout_minutes: int = 5) -> str:
        when = self.schedule.label + ("（重复发送）" if self.schedule.is_repeat else "")
        lines = [
            "【通知预览】",
            f"发送对象：{'、'.join(self.targets)}，共{len(self.groups)}个群（{self.group_names()}）",
            f"发送时间：{when}",
        ]
        if self.ask_ack:
            lines.append("回执：统计各群回复“1”的人数，发“/通知 状态”查看")
        lines += [
            "内容：",
            self.rendered,
            f"请回复“确认”发送，回复“取消”放弃（{timeout_minutes}分钟内有效）。",
        ]
        return "\n".join(lines)


@dataclass
class DeliveryLine:
    group_id: str
    group_name: str
    status: str
    occurrence: datetime
    attempts: int
    sent_at: datetime | None
    error: str
    acks: int | None  # residents who replied 1; None when the notice did not ask

    def public(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "group_name": self.group_name,
            "status": self.status,
            "run_at": self.occurrence,
            "attempts": self.attempts,
            "sent_at": self.sent_at,
            "error": self.error,
            "acks": self.acks,
        }


@dataclass
class NoticeReport:
    id: int
    text: str
    rendered: str
    targets: list[str]
    group_count: int
    status: str
    schedule: str
    repeat: str
    next_run_at: datetime | None
    runs: int
    ask_ack: bool
    created_by: str
    created_by_name: str
    source: str
    created_at: datetime
    deliveries: list[DeliveryLine] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("queued", "sending", "sent", "failed", "unknown", "cancelled"), 0)
        for d in self.latest_run():
            out[d.status] = out.get(d.status, 0) + 1
        return out

    @property
    def acks(self) -> int | None:
        if not self.ask_ack:
            return None
        return sum(d.acks or 0 for d in self.latest_run())

    def latest_run(self) -> list[DeliveryLine]:
        if not self.deliveries:
            return []
        last = max(d.occurrence for d in self.deliveries)
        return [d for d in self.deliveries if d.occurrence == last]

    def summary(self, tz: tzinfo) -> str:
        """The delivery report as staff read it in chat."""
        c = self.counts
        head = f"通知#{self.id}（{'、'.join(self.targets)}，{self.schedule}）：{STATUS_NAMES.get(self.status, self.status)}。"
        if not self.deliveries:
            when = f"，{_local(self.next_run_at, tz)}发送" if self.next_run_at else ""
            return head + f"\n还没有开始发送{when}，共{self.group_count}个群。"
        parts = [f"已送达{c['sent']}"]
        parts += [
            f"{STATUS_NAMES[k]}{c[k]}"
            for k in ("queued", "sending", "failed", "unknown", "cancelled")
            if c[k]
        ]
        run = self.latest_run()
        lines = [head, f"共{len(run)}个群：" + "，".join(parts) + "。"]
        for d in run:
            line = f"· {d.group_name}：{STATUS_NAMES.get(d.status, d.status)}"
            if d.sent_at:
                line += f" {_local(d.sent_at, tz)}"
            if d.acks is not None:
                line += f"，回复“1”{d.acks}人"
            if d.status in ("failed", "unknown"):
                line += f"（{d.error[:60]}）" if d.error else ""
            lines.append(line)
        if self.next_run_at and self.status != "cancelled":
            lines.append(f"下次发送：{_local(self.next_run_at, tz)}")
        return "\n".join(lines)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "rendered": self.rendered,
            "targets": self.targets,
            "group_count": self.group_count,
            "status": self.status,
            "schedule": self.schedule,
            "repeat": self.repeat,
            "next_run_at": self.next_run_at,
            "runs": self.runs,
            "ask_ack": self.ask_ack,
            "acks": self.acks,
            "created_by": self.created_by,
            "created_by_name": self.created_by_name,
            "source": self.source,
            "created_at": self.created_at,
            "counts": self.counts,
            "deliveries": [d.public() for d in self.deliveries],
        }


def _local(t: datetime | None, tz: tzinfo) -> str:
    if t is None:
        return ""
    local = t.astimezone(tz)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


# --- the service --------------------------------------------------------------------------------------------


class NoticeService:
    """Services.notices. `App.tick()` calls `tick()`; handlers and the admin API call the rest."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock,
        sender: Sender,
        groups: Groups,
        *,
        instance: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.sender = sender
        self.groups = groups
        self.tz = ZoneInfo(config.main.timezone)
        self.instance = instance or new_id()[:16]  # this process, in the claims it makes
        self.rng = rng or random.Random()
        limits = config.main.send_limits
        self._group_window = SlidingWindow(limits.group_per_minute, timedelta(minutes=1))
        self._last_attempt: dict[str, float] = {}  # channel -> time of the sender's last attempt
        self._errors: dict[int, str] = {}  # id(reply) -> the sender's last error for it
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        sender.on_attempt(self._observe)

    # --- making notices

    def hold(self, draft: NoticeDraft) -> dict[str, object]:
        if not isinstance(draft, Draft):  # drafts come from this service only
            raise TypeError("hold: a draft of another notice service")
        return draft.to_data()

    def restore(self, data: Mapping[str, object]) -> Draft:
        return Draft.from_data(data)

    def draft_from_command(self, text: str, staff: StaffMember) -> Draft:
        """`网格3 [明天8:00] 内容…` (the text after `/通知`) -> a Draft. Raises NoticeError (or its subclasses)."""
        try:
            sel = select_groups(self, text, Scope.of(staff))
            schedule, body = split_schedule(sel.rest, self.clock.now(), self.tz)
        except ValueError as e:
            raise NoticeError(str(e)) from None
        return self._draft(sel.targets, sel.groups, schedule, body, asks_ack(body), staff.name)

    def draft(
        self,
        targets: list[str],
        text: str,
        *,
        schedule: str = "",
        ask_ack: bool = False,
        staff: StaffMember | None = None,
        signature: str = "",
    ) -> Draft:
        """The admin API's form. Raises NoticeError."""
        try:
            sel = select_targets(self, targets, Scope.of(staff))
            when = parse_when(schedule, self.clock.now(), self.tz)
        except ValueError as e:
            raise NoticeError(str(e)) from None
        name = signature or (staff.name if staff else "")
        return self._draft(sel.targets, sel.groups, when, text, ask_ack or asks_ack(text), name)

    def _draft(
        self,
        targets: list[str],
        groups: list[GroupInfo],
        schedule: Schedule,
        text: str,
        ask_ack: bool,
        signature: str,
    ) -> Draft:
        body = text.strip()
        if not body:
            raise NoticeError("通知内容是空的，请在发送对象后面写上要通知的内容。")
        if len(body) > MAX_TEXT:
            raise NoticeError(f"通知太长了（{len(body)}字），请控制在{MAX_TEXT}字以内。")
        return Draft(
            text=body, targets=targets, groups=groups, schedule=schedule, ask_ack=ask_ack, signature=signature
        )

    def create(
        self,
        draft: NoticeDraft,
        *,
        created_by: str = "",
        created_by_name: str = "",
        source: str = "chat",
        origin_channel: str = "",
        origin_group: str = "",
    ) -> int:
        """Store a confirmed notice; it goes out when due (at once for an immediate one). Returns its number."""
        if not isinstance(draft, Draft):  # drafts come from this service only
            raise TypeError("create: a draft of another notice service")
        now = self.clock.now()
        with self.store.session() as s:
            n = Notice(
                text=draft.text,
                targets=draft.targets,
                group_ids=[g.id for g in draft.groups],
                created_by=created_by[:128],
                created_by_name=(created_by_name or draft.signature)[:128],
                source=source,
                origin_channel=origin_channel[:32],
                origin_group=origin_group[:128],
                ask_ack=draft.ask_ack,
                repeat=draft.schedule.cron,
                schedule_label=draft.schedule.label[:64],
                next_run_at=draft.schedule.first_run(now),
                status="scheduled",
                created_at=now,
            )
            s.add(n)
            s.flush()
            notice_id = n.id
        log.info(
            "notice #%d by %s to %s (%d groups), %s",
            notice_id,
            created_by or source,
            draft.targets,
            len(draft.groups),
            draft.schedule.label,
        )
        return notice_id

    def cancel(self, notice_id: int) -> NoticeReport:
        """Stop a notice: no more runs, queued deliveries dropped. Raises NoticeError if it cannot be."""
        now = self.clock.now()
        with self.store.session() as s:
            n = s.get(Notice, notice_id)
            if n is None:
                raise NoticeError(f"没有找到通知#{notice_id}。")
            if n.status == "cancelled":
                raise NoticeError(f"通知#{notice_id}已经取消过了。")
            if n.status == "done":
                raise NoticeError(f"通知#{notice_id}已经全部发送完毕，无法取消。")
            n.status, n.next_run_at, n.cancelled_at = "cancelled", None, now
            s.execute(
                update(NoticeDelivery)
                .where(NoticeDelivery.notice_id == notice_id, NoticeDelivery.status == "queued")
                .values(status="cancelled")
            )
        log.info("notice #%d cancelled", notice_id)
        report = self.report(notice_id)
        assert report is not None
        return report

    def resend(self, notice_id: int) -> int:
        """Queue again the deliveries that failed or whose state is unknown (a staff decision: an unknown one
        may reach its group twice). Returns how many."""
        now = self.clock.now()
        with self.store.session() as s:
            n = s.get(Notice, notice_id)
            if n is None:
                raise NoticeError(f"没有找到通知#{notice_id}。")
            if n.status == "cancelled":
                raise NoticeError(f"通知#{notice_id}已经取消，不能重发。")
            res = s.execute(
                update(NoticeDelivery)
                .where(
                    NoticeDelivery.notice_id == notice_id, NoticeDelivery.status.in_(("failed", "unknown"))
                )
                .values(status="queued", attempts=0, next_attempt_at=now, error="", claimed_by="")
            )
            count = int(getattr(res, "rowcount", 0) or 0)
            if count and n.status == "done":
                n.status = "sending"
        self.kick_threadsafe()
        return count

    # --- reports

    def report(self, notice_id: int) -> NoticeReport | None:
        with self.store.session() as s:
            n = s.get(Notice, notice_id)
            if n is None:
                return None
            rows = list(
                s.scalars(
                    select(NoticeDelivery)
                    .where(NoticeDelivery.notice_id == notice_id)
                    .order_by(NoticeDelivery.occurrence, NoticeDelivery.id)
                )
            )
            acks = self._acks(rows) if n.ask_ack else {}
            return self._report(n, rows, acks)

    def recent(self, limit: int = 20, created_by: str = "") -> list[NoticeReport]:
        with self.store.session() as s:
            q = select(Notice.id).order_by(Notice.id.desc()).limit(limit)
            if created_by:
                q = q.where(Notice.created_by == created_by)
            ids = list(s.scalars(q))
        return [r for i in ids if (r := self.report(i)) is not None]

    def _report(self, n: Notice, rows: list[NoticeDelivery], acks: dict[int, int]) -> NoticeReport:
        return NoticeReport(
            id=n.id,
            text=n.text,
            rendered=render(n.text, n.created_by_name, n.ask_ack),
            targets=list(n.targets or []),
            group_count=len(n.group_ids or []),
            status=n.status,
            schedule=n.schedule_label,
            repeat=n.repeat,
            next_run_at=n.next_run_at,
            runs=n.runs,
            ask_ack=n.ask_ack,
            created_by=n.created_by,
            created_by_name=n.created_by_name,
            source=n.source,
            created_at=n.created_at,
            deliveries=[
                DeliveryLine(
                    r.group_id,
                    r.group_name or r.group_id,
                    r.status,
                    r.occurrence,
                    r.attempts,
                    r.sent_at,
                    r.error,
                    acks.get(r.id, 0) if n.ask_ack else None,
                )
                for r in rows
            ],
        )

    def _acks(self, rows: list[NoticeDelivery]) -> dict[int, int]:
        """Per delivery: residents who replied 1 in that group after it arrived, until the next notice there
        that also asked for replies, or ACK_WINDOW."""
        out: dict[int, int] = {}
        with self.store.session() as s:
            for r in rows:
                if r.status != "sent" or r.sent_at is None:
                    continue
                later = s.scalar(
                    select(func.min(NoticeDelivery.sent_at))
                    .join(Notice, Notice.id == NoticeDelivery.notice_id)
                    .where(
                        Notice.ask_ack,
                        NoticeDelivery.group_id == r.group_id,
                        NoticeDelivery.sent_at > r.sent_at,
                    )
                )
                end = min(later, r.sent_at + ACK_WINDOW) if later else r.sent_at + ACK_WINDOW
                msgs = s.execute(
                    select(InboundMessage.sender, InboundMessage.text)
                    .where(
                        InboundMessage.group_id == r.group_id,
                        InboundMessage.received_at >= r.sent_at,
                        InboundMessage.received_at < end,
                    )
                    .limit(5000)
                )
                out[r.id] = len({sender for sender, text in msgs if is_ack(text)})
        return out

    def stats(self) -> dict[str, dict[str, int]]:
        """Counts by status, for health and metrics."""
        with self.store.session() as s:
            notices = dict(
                s.execute(select(Notice.status, func.count()).group_by(Notice.status)).tuples().all()
            )
            deliveries = dict(
                s.execute(select(NoticeDelivery.status, func.count()).group_by(NoticeDelivery.status))
                .tuples()
                .all()
            )
        return {"notices": notices, "deliveries": deliveries}

    # --- time-driven work

    async def tick(self) -> None:
        """Run what is due: recover dead claims, fire due notices, start the pump. App.tick() calls this."""
        self._loop = asyncio.get_running_loop()
        try:
            self.recover()
        except Exception as e:  # the store is down: try again next tick (logged once, then with backoff)
            self.store.failed("recovering notice deliveries", e, self.clock.now())
        self.kick()

    def kick(self) -> None:
        """Start delivering now (in this event loop) unless the pump is already running."""
        self._loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(), name="notice-pump")

    def kick_threadsafe(self) -> None:
        """From any thread (the admin API): start delivering in the app's loop, if it runs; else the next tick does."""
        loop = self._loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            loop.call_soon_threadsafe(self.kick)

    async def drain(self) -> None:
        """Wait until the pump has nothing ready to send (deliveries waiting for a retry may remain)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def recover(self) -> int:
        """Rows another process claimed and never marked: at most once, so `unknown`, not resent."""
        cutoff = self.clock.now() - timedelta(seconds=CLAIM_LEASE_SECONDS)
        with self.store.session() as s:
            res = s.execute(
                update(NoticeDelivery)
                .where(
                    NoticeDelivery.status == "sending",
                    NoticeDelivery.claimed_by != self.instance,
                    NoticeDelivery.claimed_at < cutoff,
                )
                .values(status="unknown", error=UNKNOWN_NOTE)
            )
            count = int(getattr(res, "rowcount", 0) or 0)
        if count:
            log.warning(
                "%d notice deliveries were in flight in a process that stopped: marked unknown", count
            )
        return count

    def fire_due(self) -> int:
        """Write the delivery rows of every run that is due; returns how many rows."""
        now = self.clock.now()
        with self.store.session() as s:
            due = list(
                s.scalars(select(Notice).where(Notice.status == "scheduled", Notice.next_run_at <= now))
            )
        written = 0
        for n in due:
            run_at = n.next_run_at
            assert run_at is not None
            nxt = next_cron(n.repeat, now, self.tz) if n.repeat else None  # missed runs are not made up
            groups = self._groups_for_run(n)
            with self.store.session() as s:
                won = s.execute(
                    update(Notice)
                    .where(Notice.id == n.id, Notice.status == "scheduled", Notice.next_run_at == run_at)
                    .values(next_run_at=nxt, status="scheduled" if nxt else "sending", runs=Notice.runs + 1)
                )
                if getattr(won, "rowcount", 0) != 1:
                    continue  # another process fired this run
                for g in groups:
                    s.add(
                        NoticeDelivery(
                            notice_id=n.id,
                            occurrence=run_at,
                            group_id=g.id,
                            group_name=g.name[:128],
                            channel=g.channel,
                            status="queued",
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
            written += len(groups)
            late = (now - run_at).total_seconds()
            log.info(
                "notice #%d fired for %d groups%s",
                n.id,
                len(groups),
                f" ({late:.0f}s late)" if late > 60 else "",
            )
        return written

    def _groups_for_run(self, n: Notice) -> list[GroupInfo]:
        """The previewed groups; a repeat picks its targets again each run (groups bound since are included)."""
        if n.repeat:
            staff = self.config.staff_member(n.created_by) if n.source == "chat" else None
            try:
                return select_targets(self, n.targets, Scope.of(staff)).groups
            except ValueError as e:
                log.warning(
                    "notice #%d: targets %s no longer resolve (%s); using the previewed groups",
                    n.id,
                    n.targets,
                    e,
                )
        return [self.groups.resolve(gid) for gid in dict.fromkeys(n.group_ids or [])]

    async def _pump(self) -> None:
        try:
            self.fire_due()
            while (row := self._next_ready()) is not None:
                await self._deliver(row)
            self._finish_notices()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the next tick resumes it; logged once, then with backoff
            self.store.failed("notice delivery", e, self.clock.now())

    def _next_ready(self) -> NoticeDelivery | None:
        now = self.clock.now()
        groups = self.config.owned_groups()  # several processes: each delivers to its own groups
        owned = [] if groups is None else [NoticeDelivery.group_id.in_(groups)]
        with self.store.session() as s:
            return s.scalars(
                select(NoticeDelivery)
                .join(Notice, Notice.id == NoticeDelivery.notice_id)
                .where(
                    NoticeDelivery.status == "queued",
                    NoticeDelivery.next_attempt_at <= now,
                    Notice.status != "cancelled",
                    *owned,
                )
                .order_by(NoticeDelivery.next_attempt_at, NoticeDelivery.id)
                .limit(1)
            ).first()

    def _channel_for(self, row: NoticeDelivery) -> str:
        channels = self.sender.channel_names()
        for c in (
            row.channel,
            self.groups.resolve(row.group_id).channel,
            self.groups.channel_of(row.group_id),
        ):
            if c and c in channels:
                return c
        return self.sender.serving(row.group_id)

    async def _pace(self, channel: str, group: str) -> None:
        """Wait until the sender would send to this group at once, so the claim spans only the send."""
        limits = self.config.main.send_limits
        clock = self.clock
        while True:
            now = clock.now()
            last = self._last_attempt.get(channel)
            wait = 0.0 if last is None else last + limits.account_interval_seconds - now.timestamp()
            wait = max(wait, self._group_window.wait(group, now))
            if wait <= 0:
                return
            await clock.sleep(wait + self.rng.uniform(0, limits.jitter_seconds))

    async def _observe(self, reply: Reply, ok: bool, error: str) -> None:
        """The sender's hook, after every attempt (answers too): the pacing the pump keeps to."""
        now = self.clock.now()
        self._last_attempt[reply.channel] = now.timestamp()
        self._group_window.hit(reply.group, now)
        if not ok and reply.kind == "notice":
            self._errors[id(reply)] = error

    def _claim(self, row_id: int) -> bool:
        now = self.clock.now()
        with self.store.session() as s:
            res = s.execute(
                update(NoticeDelivery)
                .where(NoticeDelivery.id == row_id, NoticeDelivery.status == "queued")
                .values(
                    status="sending",
                    claimed_by=self.instance,
                    claimed_at=now,
                    attempts=NoticeDelivery.attempts + 1,
                )
            )
            return getattr(res, "rowcount", 0) == 1

    def _mark(self, row_id: int, ok: bool, error: str) -> None:
        now = self.clock.now()
        with self.store.session() as s:
            row = s.get(NoticeDelivery, row_id)
            if row is None or row.claimed_by != self.instance:
                return
            if ok:
                row.status, row.sent_at, row.error = "sent", now, ""
            elif row.attempts >= MAX_ROUNDS:
                row.status, row.error = "failed", error[:500] or "发送失败"
            else:
                backoff = RETRY_BACKOFF_SECONDS[min(row.attempts, len(RETRY_BACKOFF_SECONDS)) - 1]
                row.status, row.error = "queued", error[:500]
                row.next_attempt_at = now + timedelta(seconds=backoff)

    async def _deliver(self, row: NoticeDelivery) -> None:
        channel = self._channel_for(row)
        with self.store.session() as s:
            n = s.get(Notice, row.notice_id)
            text = render(n.text, n.created_by_name, n.ask_ack) if n else ""
        if not channel or not text:
            if self._claim(row.id):
                self._fail_now(row.id, "没有可以发到这个群的渠道" if not channel else "通知不存在")
            return
        await self._pace(channel, row.group_id)
        if not self._claim(row.id):
            return  # another process took it
        reply = Reply(
            group=row.group_id,
            text=text,
            channel=channel,
            kind="notice",
            in_reply_to=f"notice-{row.notice_id}",
        )
        try:
            ok = await self.sender.submit(reply)
        except ValueError as e:  # the channel went away
            ok = False
            self._errors[id(reply)] = str(e)
        self._mark(row.id, ok, self._errors.pop(id(reply), ""))
        if ok:
            log.info("notice #%d sent to %s", row.notice_id, row.group_id)

    def _fail_now(self, row_id: int, error: str) -> None:
        with self.store.session() as s:
            s.execute(
                update(NoticeDelivery).where(NoticeDelivery.id == row_id).values(status="failed", error=error)
            )

    def _finish_notices(self) -> None:
        open_rows = exists().where(
            and_(NoticeDelivery.notice_id == Notice.id, NoticeDelivery.status.in_(("queued", "sending")))
        )
        with self.store.session() as s:
            s.execute(update(Notice).where(Notice.status == "sending", ~open_rows).values(status="done"))
