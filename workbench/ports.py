"""The workbench's one door into the rest of Doorstep.

Every import of the bot, the ticket desk, notices, groups and knowledge that the workbench makes is in this
module; the pages and the sign-in code use only `Backoffice` (built once from the running App) and the names
re-exported here. When the packages move (docs/architecture.md), only these imports change.

Everything the workbench causes to be said goes out through the sender: ticket news through the desk's owed
messages, notices through the notice service, answers to knowledge gaps and sign-in links as owed messages
(`tell`), so a restart never loses one and never says one twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO
from zoneinfo import ZoneInfo

from bot.config import Config, Service, StaffMember
from bot.groups import GroupError, GroupInfo, Scope, all_groups, bind_group, resolve_group, unbind_group
from bot.notices import STATUS_NAMES, Draft, NoticeError, NoticeReport, NoticeService
from bot.pii import mask_pii
from bot.store import Store
from bot.store.models import (
    KnowledgeGap,
    SatisfactionSurvey,
    StaffAction,
    StaffCredential,
    StaffLoginLink,
    StaffSession,
    Ticket,
    TicketCorrection,
    TicketEvent,
    TicketMedia,
    TicketNotice,
    TicketReport,
)
from bot.tickets.corrections import CorrectionError, correct
from bot.tickets.desk import ReportDesk, StatusError
from bot.tickets.notify import owe
from bot.tickets.satisfaction import RATINGS
from bot.web.admin import group_gaps
from bot.web.uploads import Ingested, UploadArea, UploadRefused, ingest_upload, remove_document
from knowledge import staff_faq
from knowledge.staff_faq import FAQError

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

__all__ = [
    "RATINGS",
    "STATUS_NAMES",
    "Backoffice",
    "CorrectionError",
    "Draft",
    "FAQError",
    "GroupError",
    "GroupInfo",
    "Ingested",
    "KnowledgeGap",
    "NoticeError",
    "NoticeReport",
    "SatisfactionSurvey",
    "Scope",
    "Service",
    "StaffAction",
    "StaffCredential",
    "StaffLoginLink",
    "StaffMember",
    "StaffSession",
    "StatusError",
    "Store",
    "Ticket",
    "TicketCorrection",
    "TicketEvent",
    "TicketMedia",
    "TicketNotice",
    "TicketReport",
    "UploadRefused",
    "mask_pii",
]


class Unavailable(Exception):
    """A part the page needs is not running in this process (the knowledge base still loading)."""


@dataclass(frozen=True)
class Told:
    """A message owed to a chat (a group, or a staff member's private chat)."""

    group: str
    text: str
    channel: str = ""
    mentions: tuple[str, ...] = ()


class Backoffice:
    """What the workbench may do, on one running App."""

    def __init__(self, app: App) -> None:
        self._app = app
        self.config: Config = app.config
        self.store: Store = app.store
        self.clock = app.clock
        self.tz = ZoneInfo(app.config.main.timezone)
        self.uploads = UploadArea(app.config.data_dir / "uploads")

    def now(self) -> datetime:
        return self.clock.now()

    # --- staff ---------------------------------------------------------------------------------------------

    def staff_member(self, staff_id: str) -> StaffMember | None:
        return self.config.staff_member(staff_id)

    def staff(self) -> list[StaffMember]:
        return list(self.config.staff.staff)

    def scope(self, staff: StaffMember) -> Scope:
        return Scope.of(staff)

    def communities(self) -> dict[str, list[str]]:
        out = {c.name: list(c.grids) for c in self.config.groups.communities}
        for g in self.config.groups.groups:
            if g.community:
                grids = out.setdefault(g.community, [])
                if g.grid and g.grid not in grids:
                    grids.append(g.grid)
        return out

    def services(self) -> list[Service]:
        return list(self.config.services.services)

    def public_url(self) -> str:
        """Where staff reach this process: the configured address, never one a request claims (a forged Host
        header must not redirect a sign-in link)."""
        http = self.config.main.http
        if http.public_url:
            return http.public_url.rstrip("/")
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
        return f"http://{host}:{self.config.http_port}"

    # --- saying things (the sender, through the desk's durable owed messages) ------------------------------------

    def tell(self, key: str, told: Told, ticket_id: int | None = None, kind: str = "answer") -> bool:
        """Owe a message (sent by the desk's notifier through the throttled sender, once, surviving a restart);
        False when one with this key was owed before."""
        with self.store.session() as s:
            fresh = owe(
                s,
                key=key[:160],
                kind=kind,
                group=told.group,
                # a private chat nobody has written in yet: the first channel (WeChat before the simulator)
                channel=told.channel or self.channel_of(told.group) or next(iter(self._app.channels), ""),
                text=told.text,
                mentions=list(told.mentions),
                ticket_id=ticket_id,
            )
        self.flush()
        return fresh

    def flush(self) -> None:
        desk = self.desk_or_none()
        if desk is not None:
            desk.notifier.flush()

    def channel_of(self, group: str) -> str:
        return self._app.services.group_channels.get(group, "")

    # --- tickets ---------------------------------------------------------------------------------------------

    def desk_or_none(self) -> ReportDesk | None:
        desk = self._app.services.tickets
        return desk if isinstance(desk, ReportDesk) else None

    def desk(self) -> ReportDesk:
        desk = self.desk_or_none()
        if desk is None:
            raise Unavailable("工单服务没有启动")
        return desk

    def reroute(self, ticket_id: int, *, service_code: str | None, urgency: str | None, staff_id: str) -> Any:
        """A correction (bot/tickets/corrections.py): re-routed now, kept as a training example."""
        return correct(
            self.store,
            self.config,
            self.clock,
            ticket_id,
            service_code=service_code,
            urgency=urgency,
            staff_id=staff_id,
        )

    async def set_status(self, ticket_id: int, status: str, note: str, staff: StaffMember) -> bool:
        return await self.desk().set_status(ticket_id, status, note, by_id=staff.id, by_name=staff.name)

    def split(self, report_id: int, staff: StaffMember) -> int:
        return self.desk().split_report(report_id, by_id=staff.id, by_name=staff.name)

    # --- groups ------------------------------------------------------------------------------------------------

    def groups(self) -> list[GroupInfo]:
        return all_groups(self._app.services)

    def group(self, group_id: str) -> GroupInfo:
        return resolve_group(self._app.services, group_id)

    def bind(
        self, group_id: str, community: str, grid: str, tags: list[str], staff: StaffMember
    ) -> GroupInfo:
        _, after = bind_group(
            self._app.services, group_id, community, grid, tags, by=staff.id, scope=Scope.of(staff)
        )
        return after

    def unbind(self, group_id: str, staff: StaffMember) -> GroupInfo:
        return unbind_group(self._app.services, group_id, by=staff.id)

    # --- notices -------------------------------------------------------------------------------------------------

    def notices(self) -> NoticeService:
        svc = self._app.services.notices
        if not isinstance(svc, NoticeService):
            raise Unavailable("通知服务没有启动")
        return svc

    # --- knowledge ----------------------------------------------------------------------------------------------

    def knowledge(self) -> Any:
        k = self._app.services.knowledge
        if k is None or not callable(getattr(k, "ingest", None)):
            loading = self._app.services.knowledge_loading
            if loading is not None and loading.active:
                raise Unavailable(loading.reply_text())
            raise Unavailable("知识库没有加载")
        return k

    def knowledge_ready(self) -> bool:
        try:
            self.knowledge()
        except Unavailable:
            return False
        return True

    def gap_groups(self, gaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Unanswered questions grouped as the admin API groups them."""
        return group_gaps(gaps)

    def documents(self) -> list[dict[str, Any]]:
        return list(self.knowledge().stats().get("files", []))

    def chunks(self, key: str) -> list[dict[str, Any]]:
        meta = self.knowledge().index.meta
        ids = meta.chunk_ids(key)
        found = meta.chunks(ids)
        return [
            {"locator": c.locator, "title": c.title, "text": c.text, "kind": c.kind}
            for c in (found[i] for i in ids if i in found)
        ]

    def doc_key(self, community: str, source: str) -> str:
        from knowledge.store import doc_key

        return doc_key(community, source)

    def upload(self, filename: str | None, stream: BinaryIO, community: str) -> Ingested:
        return ingest_upload(
            self.knowledge(), self.config, self.uploads, filename, stream, community, via="workbench"
        )

    def remove_document(self, source: str, community: str) -> list[str]:
        return remove_document(self.knowledge(), self.uploads, source, community)

    def faq_entries(self) -> list[dict[str, Any]]:
        return staff_faq.entries(self.store)

    def config_faq(self) -> list[dict[str, Any]]:
        return [
            {"questions": list(e.questions), "answer": e.answer, "source": e.source, "community": e.community}
            for e in self.config.faq.faq
        ]

    def add_faq(self, questions: list[str], answer: str, community: str, staff: StaffMember) -> int:
        """Save an FAQ entry and answer from it at once in this process (others follow on their tick)."""
        entry = staff_faq.add_entry(
            self.store, questions, answer, community=community, by=staff.id, now=self.now()
        )
        self._app.staff_faq.apply(self._app.services.knowledge)
        return entry

    def remove_faq(self, entry_id: int) -> dict[str, Any] | None:
        gone = staff_faq.remove_entry(self.store, entry_id, self.now())
        if gone is not None:
            self._app.staff_faq.apply(self._app.services.knowledge)
        return gone
