"""The admin API: what staff and their tools use to run the community's assistant.

`admin_router(app)` is mounted by the web app at `/admin`. Every endpoint needs `Authorization: Bearer <token>`
with the admin token: `http.admin_token` (env `DOORSTEP_HTTP__ADMIN_TOKEN`), or when that is empty the one generated
in the data directory's secrets.json (bot/credentials.py).
Notices created here act with the whole scope (管理员) unless `staff_id` names a staff member to act as.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Security, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from bot.notices import Draft, NoticeReport, NoticeService
from core.community import GroupInfo, StaffMember
from core.errors import CorrectionError, GroupError, KnowledgeUnavailable, NoticeError, UploadRefused
from knowledge.gaps import group_gaps
from knowledge.handoff import serving_token
from pii import mask_pii
from store.models import InboundMessage

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

MAX_ID = 2**31 - 1
NoticeId = Annotated[int, Path(ge=1, le=MAX_ID, description="the notice's number (通知#N)")]
GroupId = Annotated[
    str, Path(min_length=1, max_length=128, description="the group's id (or its configured name)")
]


# --- schemas ----------------------------------------------------------------------------------------------


class Problem(BaseModel):
    detail: str = Field(description="what is wrong, in Chinese for staff")
    reason: str = Field(
        "", description="for a failed ingest: the reason in English, as `kb ingest` prints it"
    )


class StaffOut(BaseModel):
    id: str
    name: str
    roles: list[str]
    community: str
    grids: list[str]
    phone: str = Field(description="masked: 138****5678")


class GroupOut(BaseModel):
    id: str
    name: str
    community: str
    grid: str
    tags: list[str]
    bound: bool = Field(description="has a community, from the config or a staff binding")
    source: str = Field(description="config | binding | unbound")
    channel: str


class BindIn(BaseModel):
    community: str = Field(min_length=1, max_length=64, examples=["焕玉里社区"])
    grid: str = Field("", max_length=64, examples=["网格A"])
    tags: list[str] = Field(default_factory=list, max_length=20)
    by: str = Field("", max_length=128, description="who binds it, for the record")


class NoticeIn(BaseModel):
    targets: list[str] = Field(
        min_length=1,
        max_length=50,
        examples=[["网格3"]],
        description="group names, grids (网格3, 示例社区网格3), communities, tags, or 全部",
    )
    text: str = Field(min_length=1, max_length=1500, examples=["明天9点到12点停水，请提前储水"])
    schedule: str = Field(
        "",
        max_length=64,
        examples=["明天8:00"],
        description="empty: at once; 明天8:00, 2026-11-25 08:00 (ISO 8601 too), "
        '每天8:00, 工作日7:30, 每周一 8:00, or cron "0 8 * * 1-5"',
    )
    ask_ack: bool = Field(False, description="add 收到请回复1 and count the replies per group")
    staff_id: str = Field("", max_length=128, description="act as this staff member (their scope and name)")
    signature: str = Field(
        "", max_length=64, description="the name under the notice; default the staff member's"
    )


class PreviewGroup(BaseModel):
    id: str
    name: str
    community: str
    grid: str


class PreviewOut(BaseModel):
    targets: list[str]
    group_count: int
    groups: list[PreviewGroup]
    schedule: str
    repeat: str = Field(description="the cron expression of a repeat, else empty")
    first_run_at: datetime | None = Field(description="null: at once")
    ask_ack: bool
    rendered: str = Field(description="the notice exactly as the groups will read it")
    preview: str = Field(description="the preview staff see in chat")


class DeliveryOut(BaseModel):
    group_id: str
    group_name: str
    status: str = Field(description="queued | sending | sent | failed | unknown | cancelled")
    run_at: datetime
    attempts: int
    sent_at: datetime | None
    error: str
    acks: int | None = Field(description="residents who replied 1; null if the notice did not ask")


class NoticeOut(BaseModel):
    id: int
    text: str
    rendered: str
    targets: list[str]
    group_count: int
    status: str = Field(description="scheduled | sending | done | cancelled")
    schedule: str
    repeat: str
    next_run_at: datetime | None
    runs: int
    ask_ack: bool
    acks: int | None
    created_by: str
    created_by_name: str
    source: str
    created_at: datetime
    counts: dict[str, int] = Field(description="the latest run's deliveries by status")
    deliveries: list[DeliveryOut]


class DeliveryReport(BaseModel):
    notice_id: int
    status: str
    counts: dict[str, int]
    acks: int | None
    summary: str = Field(description="the report as staff read it in chat")
    deliveries: list[DeliveryOut]


class ResendOut(BaseModel):
    notice_id: int
    requeued: int


class HealthOut(BaseModel):
    status: str
    parts: dict[str, Any]


# --- helpers ----------------------------------------------------------------------------------------------


def _mask_phone(phone: str) -> str:
    digits = phone.strip()
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 8 else ("****" if digits else "")


def _group_out(g: GroupInfo) -> GroupOut:
    return GroupOut(
        id=g.id,
        name=g.name,
        community=g.community,
        grid=g.grid,
        tags=list(g.tags),
        bound=g.bound,
        source=g.source,
        channel=g.channel,
    )


def _notice_out(r: NoticeReport) -> NoticeOut:
    return NoticeOut.model_validate(r.public())


class _Metrics:
    """Collects at scrape time from the store and the running app: nothing to keep in step."""

    def __init__(self, app: App) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        app = self.app
        out: list[Metric] = []
        up = GaugeMetricFamily("doorstep_store_up", "Whether the store answers (1) or not (0)")
        store_ok = app.store.ping()
        up.add_metric([], 1.0 if store_ok else 0.0)
        out.append(up)
        sent = CounterMetricFamily(
            "doorstep_sender_sent", "Messages the throttled sender delivered since start"
        )
        sent.add_metric([], float(app.sender.sent_count))
        out.append(sent)
        pending = GaugeMetricFamily("doorstep_sender_pending", "Replies waiting in the throttled sender")
        pending.add_metric([], float(app.sender.pending()))
        out.append(pending)
        staff = GaugeMetricFamily("doorstep_staff", "Staff members configured")
        staff.add_metric([], float(len(app.config.staff.staff)))
        out.append(staff)
        if not store_ok:
            return out
        stats = app.notices.stats()
        notices = GaugeMetricFamily("doorstep_notices", "Notices by status", labels=["status"])
        for status in ("scheduled", "sending", "done", "cancelled"):
            notices.add_metric([status], float(stats["notices"].get(status, 0)))
        out.append(notices)
        deliveries = GaugeMetricFamily(
            "doorstep_notice_deliveries",
            "Notice deliveries (one group, one run) by status",
            labels=["status"],
        )
        for status in ("queued", "sending", "sent", "failed", "unknown", "cancelled"):
            deliveries.add_metric([status], float(stats["deliveries"].get(status, 0)))
        out.append(deliveries)
        groups = app.groups.all()
        g = GaugeMetricFamily(
            "doorstep_groups", "Groups the bot knows, bound to a community or not", labels=["bound"]
        )
        g.add_metric(["true"], float(sum(1 for x in groups if x.bound)))
        g.add_metric(["false"], float(sum(1 for x in groups if not x.bound)))
        out.append(g)
        with app.store.session() as s:
            rows = (
                s.execute(select(InboundMessage.status, func.count()).group_by(InboundMessage.status))
                .tuples()
                .all()
            )
        inbound = CounterMetricFamily(
            "doorstep_inbound_messages", "Messages the router accepted, by outcome", labels=["status"]
        )
        for status, n in rows:
            inbound.add_metric([status or "received"], float(n))
        out.append(inbound)
        return out


# --- the router ---------------------------------------------------------------------------------------------


def admin_router(app: App) -> APIRouter:
    """The admin API for one App; mount it with `web.include_router(admin_router(app), prefix="/admin")`."""
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="AdminToken",
        description="http.admin_token in config/doorstep.yaml or $DOORSTEP_HTTP__ADMIN_TOKEN; empty there: the "
        "admin_token generated in the data directory's secrets.json",
    )

    def require_token(creds: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:  # noqa: B008
        given = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else ""
        # the admin token, or the token `serve` wrote into its index's lock file for `kb ingest` (handoff.py)
        accepted = [t for t in (app.config.admin_token, serving_token()) if t]
        if not given or not any(hmac.compare_digest(given.encode(), t.encode()) for t in accepted):
            raise HTTPException(
                status_code=401,
                detail="需要管理令牌：请求头 Authorization: Bearer <admin_token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "missing or wrong token"}
    }
    router = APIRouter(dependencies=[Depends(require_token)], responses=errors)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Metrics(app))  # type: ignore[arg-type]

    def notices() -> NoticeService:
        return app.notices

    def staff_member(staff_id: str) -> StaffMember | None:
        if not staff_id:
            return None
        found = app.config.staff_member(staff_id)
        if found is None:
            raise HTTPException(400, f"没有找到工作人员“{staff_id}”")
        return found

    def draft(body: NoticeIn) -> tuple[Draft, StaffMember | None]:
        staff = staff_member(body.staff_id)
        try:
            d = notices().draft(
                body.targets,
                body.text,
                schedule=body.schedule,
                ask_ack=body.ask_ack,
                staff=staff,
                signature=body.signature,
            )
        except NoticeError as e:
            raise HTTPException(400, str(e)) from None
        return d, staff

    def preview_out(d: Draft) -> PreviewOut:
        return PreviewOut(
            targets=d.targets,
            group_count=len(d.groups),
            groups=[PreviewGroup(id=g.id, name=g.name, community=g.community, grid=g.grid) for g in d.groups],
            schedule=d.schedule.label,
            repeat=d.schedule.cron,
            first_run_at=d.schedule.at,
            ask_ack=d.ask_ack,
            rendered=d.rendered,
            preview=d.preview(),
        )

    def report_or_404(notice_id: int) -> NoticeReport:
        r = notices().report(notice_id)
        if r is None:
            raise HTTPException(404, f"没有找到通知#{notice_id}")
        return r

    bad: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem, "description": "the request cannot be carried out (reason in Chinese)"}
    }
    missing: dict[int | str, dict[str, Any]] = {
        404: {"model": Problem, "description": "no such notice or group"}
    }

    # --- health and metrics

    @router.get("/health", response_model=HealthOut, tags=["health"], summary="The state of each part")
    def health() -> HealthOut:
        h = app.health()
        parts = dict(h.get("parts", {}))
        if app.store.ping():
            parts["notices"] = app.notices.stats()
        return HealthOut(status=str(h.get("status", "ok")), parts=parts)

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["health"],
        summary="Metrics in the Prometheus text format",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> PlainTextResponse:
        body = generate_latest(registry) + generate_latest(REGISTRY)
        return PlainTextResponse(body.decode("utf-8"), media_type=CONTENT_TYPE_LATEST)

    # --- staff and groups

    @router.get("/staff", response_model=list[StaffOut], tags=["staff"], summary="Staff and their roles")
    def staff() -> list[StaffOut]:
        return [
            StaffOut(
                id=s.id,
                name=s.name,
                roles=list(s.roles),
                community=s.community,
                grids=list(s.grids),
                phone=_mask_phone(s.phone),
            )
            for s in app.config.staff.staff
        ]

    @router.get(
        "/groups",
        response_model=list[GroupOut],
        tags=["groups"],
        summary="Groups, their community and grid, and whether they are bound",
    )
    def groups(
        bound: Annotated[bool | None, Query(description="only bound (true) or unbound (false)")] = None,
    ) -> list[GroupOut]:
        return [_group_out(g) for g in app.groups.all() if bound is None or g.bound == bound]

    @router.get(
        "/groups/{group_id}",
        response_model=GroupOut,
        tags=["groups"],
        responses=missing,
        summary="One group: its community and grid, from the config or a binding",
    )
    def group(group_id: GroupId) -> GroupOut:
        g = app.groups.resolve(group_id)
        if g.source == "unbound" and all(x.id != g.id for x in app.groups.all()):
            raise HTTPException(404, f"没有见过群“{group_id}”")
        return _group_out(g)

    @router.post(
        "/groups/{group_id}/bind",
        response_model=GroupOut,
        tags=["groups"],
        responses=bad,
        summary="Bind a group to a community and grid (as /绑定 does in the group)",
    )
    def bind(group_id: GroupId, body: BindIn) -> GroupOut:
        try:
            _, after = app.groups.bind(
                group_id,
                body.community.strip(),
                body.grid.strip(),
                [t.strip()[:32] for t in body.tags],
                by=body.by or "admin-api",
            )
        except GroupError as e:
            raise HTTPException(400, str(e)) from None
        return _group_out(after)

    @router.delete(
        "/groups/{group_id}/bind",
        response_model=GroupOut,
        tags=["groups"],
        summary="Remove a staff binding (the group falls back to its config entry, or unbound)",
    )
    def unbind(group_id: GroupId) -> GroupOut:
        return _group_out(app.groups.unbind(group_id, by="admin-api"))

    # --- notices

    @router.post(
        "/notices/preview",
        response_model=PreviewOut,
        tags=["notices"],
        responses=bad,
        summary="What a notice would do: the groups, the time, the text as sent; nothing is stored",
    )
    def preview(body: NoticeIn) -> PreviewOut:
        return preview_out(draft(body)[0])

    @router.post(
        "/notices",
        response_model=NoticeOut,
        status_code=201,
        tags=["notices"],
        responses=bad,
        summary="Create a notice; it goes out when due (at once without a schedule)",
    )
    def create(body: NoticeIn) -> NoticeOut:
        d, staff = draft(body)
        svc = notices()
        nid = svc.create(
            d, created_by=staff.id if staff else "admin-api", created_by_name=d.signature, source="api"
        )
        svc.kick_threadsafe()
        return _notice_out(report_or_404(nid))

    @router.get(
        "/notices", response_model=list[NoticeOut], tags=["notices"], summary="Recent notices, newest first"
    )
    def list_notices(
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        created_by: Annotated[str, Query(max_length=128)] = "",
    ) -> list[NoticeOut]:
        return [_notice_out(r) for r in notices().recent(limit, created_by=created_by)]

    @router.get(
        "/notices/{notice_id}",
        response_model=NoticeOut,
        tags=["notices"],
        responses=missing,
        summary="One notice with its deliveries",
    )
    def get_notice(notice_id: NoticeId) -> NoticeOut:
        return _notice_out(report_or_404(notice_id))

    @router.get(
        "/notices/{notice_id}/deliveries",
        response_model=DeliveryReport,
        tags=["notices"],
        responses=missing,
        summary="The delivery report: per group queued / sent / failed / unknown, the time, replies of 1",
    )
    def deliveries(notice_id: NoticeId) -> DeliveryReport:
        r = report_or_404(notice_id)
        return DeliveryReport(
            notice_id=r.id,
            status=r.status,
            counts=r.counts,
            acks=r.acks,
            summary=r.summary(notices().tz),
            deliveries=[DeliveryOut.model_validate(d.public()) for d in r.deliveries],
        )

    @router.post(
        "/notices/{notice_id}/cancel",
        response_model=NoticeOut,
        tags=["notices"],
        responses={**missing, 409: {"model": Problem, "description": "already done or cancelled"}},
        summary="Cancel a notice: no more runs, queued deliveries dropped",
    )
    def cancel(notice_id: NoticeId) -> NoticeOut:
        report_or_404(notice_id)
        try:
            return _notice_out(notices().cancel(notice_id))
        except NoticeError as e:
            raise HTTPException(409, str(e)) from None

    @router.post(
        "/notices/{notice_id}/resend",
        response_model=ResendOut,
        tags=["notices"],
        responses={**missing, 409: {"model": Problem, "description": "the notice is cancelled"}},
        summary="Queue again the groups whose delivery failed or is unknown (an unknown one may get it twice)",
    )
    def resend(notice_id: NoticeId) -> ResendOut:
        report_or_404(notice_id)
        try:
            return ResendOut(notice_id=notice_id, requeued=notices().resend(notice_id))
        except NoticeError as e:
            raise HTTPException(409, str(e)) from None

    _knowledge_routes(router, app)
    _ticket_routes(router, app)
    return router


# --- knowledge (knowledge/service.py KnowledgeService) -----------------------------------------------------------


class KnowledgeFile(BaseModel):
    source: str
    community: str
    title: str
    kind: str
    chunks: int
    ingested_at: Any = None


class IngestOut(BaseModel):
    source: str
    status: str = Field(description="added | updated | unchanged | removed | failed")
    community: str
    chunks: int
    reason: str
    warnings: list[str] = Field(default_factory=list, description="what the loader noted (merged cells ...)")
    summary: str


class RemoveOut(BaseModel):
    removed: list[str]


class FAQOut(BaseModel):
    questions: list[str]
    answer: str
    source: str
    community: str


class GapQuestion(BaseModel):
    id: int
    question: str
    group: str
    community: str
    asked_at: str
    status: str


class GapGroupOut(BaseModel):
    question: str = Field(description="the most asked wording")
    count: int = Field(description="how many times a question of this group was asked")
    askers: int
    communities: list[str]
    last_asked_at: str
    questions: list[GapQuestion]


def _knowledge_routes(router: APIRouter, app: App) -> None:
    from knowledge.service import KnowledgeService

    unavailable: dict[int | str, dict[str, Any]] = {
        503: {"model": Problem, "description": "the knowledge base is not loaded in this process"}
    }

    def knowledge() -> KnowledgeService:
        k = app.knowledge.full()
        if k is None:
            raise HTTPException(503, "知识库没有加载")
        return k

    @router.get(
        "/knowledge", tags=["knowledge"], responses=unavailable, summary="Documents, chunks, index size"
    )
    def knowledge_stats() -> dict[str, Any]:
        return knowledge().stats()

    @router.get(
        "/knowledge/documents",
        response_model=list[KnowledgeFile],
        tags=["knowledge"],
        responses=unavailable,
        summary="The ingested documents",
    )
    def documents() -> list[KnowledgeFile]:
        return [KnowledgeFile.model_validate(f) for f in knowledge().stats().get("files", [])]

    def refused(e: UploadRefused) -> JSONResponse:
        return JSONResponse({"detail": e.message, "reason": e.reason}, status_code=e.status)

    @router.post(
        "/knowledge/documents",
        response_model=IngestOut,
        status_code=201,
        tags=["knowledge"],
        responses={
            **unavailable,
            400: {
                "model": Problem,
                "description": "the file cannot be ingested (reason in Chinese and English)",
            },
            413: {"model": Problem, "description": "the file is larger than the limit"},
            422: {"model": Problem, "description": "not a community of the configuration"},
        },
        summary="Upload a document (Markdown, TXT, DOCX, PDF, HTML, CSV, XLSX, JSON catalog): ingested at once",
    )
    def upload(
        file: Annotated[UploadFile, File(description="the document")],
        community: Annotated[
            str, Form(max_length=64, description="its community (one of config/groups.yaml); empty: all")
        ] = "",
    ) -> Any:
        # Everything the request names is checked before a byte is written (uploads.py)
        try:
            result = app.library.upload(file.filename, file.file, community, via="admin API")
        except KnowledgeUnavailable as e:
            raise HTTPException(503, str(e)) from None
        except UploadRefused as e:
            log.info("admin API refused an upload: %s", e.reason)
            return refused(e)
        return IngestOut.model_validate(result, from_attributes=True)

    @router.delete(
        "/knowledge/documents/{source}",
        response_model=RemoveOut,
        tags=["knowledge"],
        responses={**unavailable, 404: {"model": Problem, "description": "no such document"}},
        summary="Remove a document by its file name (in every community, or in the one given)",
    )
    def remove(
        source: Annotated[str, Path(min_length=1, max_length=255)],
        community: Annotated[
            str | None, Query(max_length=64, description="only this community's (empty: the global one)")
        ] = None,
    ) -> RemoveOut:
        try:
            removed = app.library.remove(source, community)
        except KnowledgeUnavailable as e:
            raise HTTPException(503, str(e)) from None
        if not removed:
            raise HTTPException(404, f"没有找到文档“{source}”")
        return RemoveOut(removed=removed)

    @router.get(
        "/knowledge/faq",
        response_model=list[FAQOut],
        tags=["knowledge"],
        summary="The FAQ (config/faq.yaml), answered before the documents",
    )
    def faq() -> list[FAQOut]:
        return [
            FAQOut(questions=list(e.questions), answer=e.answer, source=e.source, community=e.community)
            for e in app.config.faq.faq
        ]

    @router.get(
        "/knowledge/gaps",
        response_model=list[GapGroupOut],
        tags=["knowledge"],
        responses=unavailable,
        summary="Questions the knowledge could not answer, grouped by similarity, most asked first",
    )
    def gaps(
        community: Annotated[str, Query(max_length=64)] = "",
        status: Annotated[str, Query(max_length=16, description="open | forwarded | answered")] = "",
        limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    ) -> list[GapGroupOut]:
        k = knowledge()
        rows = group_gaps(k.gaps(community=community or None, status=status or None, limit=limit))
        return [GapGroupOut.model_validate(r) for r in rows]


# --- tickets seen from the bot (store/models.py Ticket, TicketReport) ----------------------------------------


class TicketReportOut(BaseModel):
    id: int
    group_id: str
    sender_name: str
    text: str = Field(description="as the resident wrote it, phone and ID numbers masked")
    place: str
    contact: str = Field(
        description="phone numbers the resident gave, for staff to call back; never shown in groups"
    )
    state: str = Field(description="draft | filed | merged (into a ticket someone reported first)")
    created_at: datetime


class TicketOut(BaseModel):
    id: int
    title: str
    service_code: str
    service_name: str
    place: str
    community: str
    grid: str
    urgency: str
    status: str = Field(description="open | closed, as the ticket backend says")
    status_notes: str
    agency: str
    sync: str = Field(description="pending | sent | parked: whether the backend has it")
    remote_id: str | None
    reports: int = Field(description="reports merged into this ticket, the first included")
    reporters: int
    created_at: datetime
    updated_at: datetime


class TicketDetail(TicketOut):
    report_list: list[TicketReportOut]


class CorrectionIn(BaseModel):
    service_code: str | None = Field(
        default=None, max_length=64, description="a service code or its Chinese name"
    )
    urgency: Literal["normal", "urgent"] | None = None
    staff: str = Field(default="", max_length=128, description="who corrects (a staff id), for the record")


def _ticket_routes(router: APIRouter, app: App) -> None:
    from store.models import Ticket, TicketReport

    def ticket_out(t: Ticket, reports: list[TicketReport]) -> dict[str, Any]:
        return {
            "id": t.id,
            "title": mask_pii(t.title),  # masked when stored; again for rows stored before that
            "service_code": t.service_code,
            "service_name": t.service_name,
            "place": mask_pii(t.place),
            "community": t.community,
            "grid": t.grid,
            "urgency": t.urgency,
            "status": t.status,
            "status_notes": mask_pii(t.status_notes),
            "agency": t.agency,
            "sync": t.sync,
            "remote_id": t.remote_id,
            "reports": len(reports),
            "reporters": len({r.sender for r in reports}),
            "created_at": t.created_at,
            "updated_at": t.updated_at,
        }

    def report_out(r: TicketReport) -> TicketReportOut:
        return TicketReportOut(
            id=r.id,
            group_id=r.group_id,
            sender_name=r.sender_name,
            text=mask_pii(r.text),
            place=mask_pii(r.place),
            contact=r.contact,
            state=r.state,
            created_at=r.created_at,
        )

    @router.get(
        "/tickets",
        response_model=list[TicketOut],
        tags=["tickets"],
        summary="Tickets from the groups, newest first, with how many reports were merged into each",
    )
    def tickets(
        status: Annotated[str, Query(max_length=16, description="open | closed")] = "",
        community: Annotated[str, Query(max_length=64)] = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[TicketOut]:
        with app.store.session() as s:
            q = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
            if status:
                q = q.where(Ticket.status == status)
            if community:
                q = q.where(Ticket.community == community)
            found = list(s.scalars(q))
            reports: dict[int, list[TicketReport]] = {t.id: [] for t in found}
            if found:
                for r in s.scalars(select(TicketReport).where(TicketReport.ticket_id.in_(list(reports)))):
                    if r.ticket_id is not None:
                        reports[r.ticket_id].append(r)
            return [TicketOut.model_validate(ticket_out(t, reports[t.id])) for t in found]

    @router.get(
        "/tickets/reports",
        response_model=list[TicketReportOut],
        tags=["tickets"],
        summary="Reports as residents sent them, phone and ID numbers masked (drafts waiting for a place included)",
    )
    def reports(
        state: Annotated[str, Query(max_length=16, description="draft | filed | merged | supplement")] = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[TicketReportOut]:
        with app.store.session() as s:
            q = select(TicketReport).order_by(TicketReport.id.desc()).limit(limit)
            if state:
                q = q.where(TicketReport.state == state)
            return [report_out(r) for r in s.scalars(q)]

    @router.post(
        "/tickets/{ticket_id}/correction",
        response_model=TicketOut,
        tags=["tickets"],
        responses={404: {"model": Problem, "description": "no such ticket"}, 422: {"model": Problem}},
        summary="Correct a ticket's service and/or urgency; kept as a training example (see `doorstep train`)",
    )
    def correct_ticket(ticket_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: CorrectionIn) -> TicketOut:
        try:
            app.desk.correct(
                ticket_id, service_code=body.service_code, urgency=body.urgency, staff_id=body.staff
            )
        except CorrectionError as e:
            raise HTTPException(404 if "没有找到" in str(e) else 422, str(e)) from None
        with app.store.session() as s:
            t = s.get(Ticket, ticket_id)
            assert t is not None
            rs = list(s.scalars(select(TicketReport).where(TicketReport.ticket_id == t.id)))
            return TicketOut.model_validate(ticket_out(t, rs))

    @router.get(
        "/tickets/{ticket_id}",
        response_model=TicketDetail,
        tags=["tickets"],
        responses={404: {"model": Problem, "description": "no such ticket"}},
        summary="One ticket, where it stands, and every report merged into it",
    )
    def ticket(ticket_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> TicketDetail:
        with app.store.session() as s:
            t = s.get(Ticket, ticket_id)
            if t is None:
                raise HTTPException(404, f"没有找到工单#{ticket_id}")
            rs = list(
                s.scalars(
                    select(TicketReport).where(TicketReport.ticket_id == t.id).order_by(TicketReport.id)
                )
            )
            return TicketDetail.model_validate(
                {**ticket_out(t, rs), "report_list": [report_out(r) for r in rs]}
            )
