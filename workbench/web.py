"""The staff workbench's pages and actions, server-rendered (Jinja2), at /staff/.

`Workbench.routes()` is what the web shell mounts. Every page and action needs a signed-in staff session
(`signed`), every form post its session's CSRF token (`checked_form`); only the sign-in pages and the static
assets (CSS, a small script, no data) are open. Every action is recorded with who did it (`Auth.record`).
Pages carry a strict Content-Security-Policy: no inline script, nothing from another origin.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from starlette.datastructures import FormData, UploadFile

from core.community import StaffMember
from core.errors import (
    CorrectionError,
    FAQError,
    GroupError,
    KnowledgeUnavailable,
    NoticeError,
    StatusError,
    UploadRefused,
)
from core.ports import NOTICE_STATUS, RATINGS, NoticeDraft, NoticeRecord
from pii import mask_pii
from store.models import (
    KnowledgeGap,
    SatisfactionSurvey,
    Ticket,
    TicketCorrection,
    TicketEvent,
    TicketMedia,
    TicketNotice,
    TicketReport,
)
from workbench import figures as figs
from workbench import svg
from workbench.auth import Auth, AuthError, Signed, csrf_ok
from workbench.ports import Backoffice, Told
from workbench.roles import may, nav, reaches, role_label
from workbench.settings import WorkbenchSettings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COOKIE = "doorstep_staff"
LOGIN_CSRF = "doorstep_login_csrf"
PREFIX = "/staff"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
TICKET_STATUS = {"open": "处理中", "closed": "已办结"}
URGENCY = {"urgent": "紧急", "normal": "一般"}
SYNC = {"pending": "待提交", "sent": "已提交工单系统", "parked": "提交失败，重试中"}
REPORT_STATE = {"draft": "待补充地点", "filing": "登记中", "filed": "首报", "merged": "合并进来"}
ANSWER_TEXT = "您之前问的“{question}”，社区工作人员答复：{answer}"
LINK_TEXT = "家门口工作台登录链接（{minutes}分钟内有效，只能用一次；不是您本人申请的请忽略）：\n{url}"
MAX_LIST = 300
STATIC = {"staff.css": "text/css", "staff.js": "text/javascript"}  # the assets, served open (no data in them)


class NotSignedIn(Exception):
    """No valid session: a page sends the browser to sign in, anything else is answered 401."""


class Refused(Exception):
    """An action that cannot be done: the page shows `message` (Chinese) with the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


class Workbench:
    """The pages of one App, built by bot/app.py; `routes()` is what the web shell mounts."""

    def __init__(self, bo: Backoffice, settings: WorkbenchSettings | None = None) -> None:
        self.bo = bo
        self.settings = settings or WorkbenchSettings()
        self.auth = Auth(bo.store, self.settings)
        self.env = _env()
        self.env.filters["local"] = self.local
        self.env.filters["ago"] = self.ago
        self.secure_cookie = bo.public_url.startswith("https://")
        self.router: APIRouter | None = (
            None  # the pages and actions under /staff, once built (tests walk them)
        )
        self._routes: APIRouter | None = None

    def routes(self) -> APIRouter:
        """The workbench at /staff/, for the web shell to mount (built once)."""
        if self._routes is None:
            self.router = router(self)
            self._routes = APIRouter()
            self._routes.include_router(self.router, prefix=PREFIX)
        return self._routes

    # --- rendering -------------------------------------------------------------------------------------------

    def local(self, t: datetime | None) -> str:
        if t is None:
            return ""
        lt = t.astimezone(self.bo.tz)
        return f"{lt.month}月{lt.day}日 {lt:%H:%M}"

    def ago(self, t: datetime | None) -> str:
        if t is None:
            return ""
        minutes = int((self.bo.now() - t).total_seconds() // 60)
        if minutes < 1:
            return "刚刚"
        if minutes < 60:
            return f"{minutes}分钟前"
        if minutes < 48 * 60:
            return f"{minutes // 60}小时前"
        return f"{minutes // 1440}天前"

    def page(self, name: str, user: Signed | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            user=user,
            staff=user.staff if user else None,
            nav=nav(user.staff) if user else [],
            role=role_label(user.staff) if user else "",
            csrf=user.csrf if user else ctx.pop("login_csrf", ""),
            bot=self.bo.ports.config.bot.name,
            TICKET_STATUS=TICKET_STATUS,
            URGENCY=URGENCY,
            SYNC=SYNC,
            REPORT_STATE=REPORT_STATE,
            NOTICE_STATUS=NOTICE_STATUS,
            RATINGS=RATINGS,
            may=(lambda what: may(user.staff, what)) if user else (lambda what: False),
            **ctx,
        )
        return secure(HTMLResponse(html, status_code=status))

    # --- the session ---------------------------------------------------------------------------------------------

    def signed(self, request: Request) -> Signed:
        got = self.auth.session(request.cookies.get(COOKIE, ""), self.bo.now(), self.bo.staff_member)
        if got is None:
            raise NotSignedIn()
        return got

    def allowed(self, user: Signed, what: str) -> None:
        if not may(user.staff, what):
            raise Refused(403, "您的角色不能使用这一项")

    def record(self, user: Signed, action: str, target: str = "", detail: str = "") -> None:
        self.auth.record(user.staff.id, user.staff.name, action, target, detail, now=self.bo.now())

    def start_session(self, staff: StaffMember, via: str, to: str) -> Response:
        token = self.auth.open_session(staff, self.bo.now(), via)
        self.auth.record(staff.id, staff.name, f"sign-in:{via}", now=self.bo.now())
        r = RedirectResponse(_safe_next(to), status_code=303)
        r.set_cookie(
            COOKIE,
            token,
            max_age=int(self.auth.session_life.total_seconds()),
            path=PREFIX,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookie,
        )
        r.delete_cookie(LOGIN_CSRF, path=PREFIX)
        return r

    # --- what a page raises, answered -----------------------------------------------------------------------

    def not_signed_in(self, request: Request) -> Response:
        if request.method == "GET" and not request.url.path.endswith(".json"):
            to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return secure(RedirectResponse(f"{PREFIX}/login?next={quote(to)}", status_code=303))
        return secure(JSONResponse({"detail": "请先登录工作台"}, status_code=401))

    def refused(self, request: Request, exc: Refused) -> Response:
        if request.url.path.endswith(".json"):
            return secure(JSONResponse({"detail": exc.message}, status_code=exc.status))
        user = None
        with contextlib.suppress(NotSignedIn):
            user = self.signed(request)
        return self.page("error.html", user, status=exc.status, message=exc.message)

    def route_class(self) -> type[APIRoute]:
        """Routes that answer NotSignedIn and Refused, raised in a page or in its dependencies, themselves
        (so the workbench needs no exception handler on the web shell's app)."""
        wb = self

        class WorkbenchRoute(APIRoute):
            def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
                handle = super().get_route_handler()

                async def answer(request: Request) -> Response:
                    try:
                        return await handle(request)
                    except NotSignedIn:
                        return wb.not_signed_in(request)
                    except Refused as e:
                        return wb.refused(request, e)

                return answer

        return WorkbenchRoute


R = TypeVar("R", bound=Response)


def secure(r: R) -> R:
    r.headers["Content-Security-Policy"] = CSP
    r.headers["X-Content-Type-Options"] = "nosniff"
    r.headers["Referrer-Policy"] = "no-referrer"  # a sign-in link never leaks in a Referer
    r.headers["X-Frame-Options"] = "DENY"
    r.headers["Cache-Control"] = "no-store"
    return r


def _safe_next(to: str) -> str:
    """Only a path of the workbench: never an open redirect."""
    return to if to.startswith(PREFIX + "/") and not to.startswith("//") and "\\" not in to else PREFIX + "/"


def _text(form: FormData, key: str, limit: int = 2000) -> str:
    v = form.get(key)
    return v.strip()[:limit] if isinstance(v, str) else ""


def _int(form: FormData | dict[str, str], key: str) -> int:
    v = form.get(key)
    try:
        n = int(str(v))
    except (TypeError, ValueError):
        raise Refused(400, "请求的编号不对") from None
    if not 1 <= n < 2**31:
        raise Refused(400, "请求的编号不对")
    return n


# --- the router ------------------------------------------------------------------------------------------------


def router(wb: Workbench) -> APIRouter:
    r = APIRouter(include_in_schema=False, route_class=wb.route_class())
    bo = wb.bo

    def signed(request: Request) -> Signed:
        return wb.signed(request)

    async def checked_form(request: Request) -> tuple[Signed, FormData]:
        user = wb.signed(request)
        form = await request.form()
        given = form.get("csrf")
        if not csrf_ok(user.csrf, given if isinstance(given, str) else None):
            log.warning("workbench: a form post by %s without its CSRF token was refused", user.staff.id)
            raise Refused(403, "页面已过期或请求来源不对，请刷新页面后再试")
        return user, form

    User = Depends(signed)  # noqa: N806
    Form = Depends(checked_form)  # noqa: N806

    # --- the assets -----------------------------------------------------------------------------------------

    @r.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise Refused(404, "没有这个文件")
        resp = FileResponse(HERE / "static" / name, media_type=STATIC[name])
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    # --- signing in -----------------------------------------------------------------------------------------

    def login_page(request: Request, error: str = "", notice: str = "", status: int = 200) -> Response:
        token = request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(24)
        resp = wb.page(
            "login.html",
            None,
            status=status,
            login_csrf=token,
            error=error,
            notice=notice,
            next=_safe_next(request.query_params.get("next", "")),
        )
        resp.set_cookie(
            LOGIN_CSRF, token, path=PREFIX, httponly=True, samesite="strict", secure=wb.secure_cookie
        )
        return resp

    async def login_form(request: Request) -> FormData:
        form = await request.form()
        given = form.get("csrf")
        if not csrf_ok(request.cookies.get(LOGIN_CSRF, ""), given if isinstance(given, str) else None):
            raise Refused(403, "页面已过期，请刷新登录页后再试")
        return form

    @r.get("/login")
    async def login(request: Request) -> Response:
        return login_page(request)

    @r.post("/login")
    async def login_post(request: Request) -> Response:
        form = await login_form(request)
        who = _text(form, "account", 128)
        password = form.get("password")
        staff = _find_staff(bo, who)
        if staff is None or not isinstance(password, str):
            log.info("workbench: sign-in refused for unknown account %r", who[:40])
            return login_page(request, error="账号或密码不对", status=401)
        try:
            wb.auth.check_password(staff, password, bo.now())
        except AuthError as e:
            wb.auth.record(staff.id, staff.name, "sign-in refused", detail=str(e), now=bo.now())
            return login_page(request, error=str(e), status=401)
        return wb.start_session(staff, "password", _text(form, "next", 500))

    @r.post("/login/link")
    async def login_link(request: Request) -> Response:
        form = await login_form(request)
        staff = _find_staff(bo, _text(form, "account", 128))
        said = "如果这个账号登记过，登录链接已经发到本人的聊天里，15分钟内有效。"
        if staff is not None:
            token = wb.auth.new_link(staff, bo.now())
            if token is not None:
                minutes = int(wb.auth.link_life.total_seconds() // 60)
                url = f"{bo.public_url}{PREFIX}/login/link/{token}"
                bo.tell(
                    f"signin:{token[:24]}",
                    Told(group=staff.id, text=LINK_TEXT.format(minutes=minutes, url=url)),
                    kind="alert",
                )
                wb.auth.record(staff.id, staff.name, "sign-in link sent", now=bo.now())
            else:
                log.info("workbench: too many sign-in links asked for %s", staff.id)
        return login_page(
            request, notice=said.replace("15", str(int(wb.auth.link_life.total_seconds() // 60)))
        )

    @r.get("/login/link/{token}")
    async def link_page(request: Request, token: str) -> Response:
        # a GET only shows a button: link previews in chat apps fetch URLs and must not use up the link
        csrf = request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(24)
        page = wb.page("link.html", None, login_csrf=csrf, token=token[:200])
        page.set_cookie(
            LOGIN_CSRF, csrf, path=PREFIX, httponly=True, samesite="strict", secure=wb.secure_cookie
        )
        return page

    @r.post("/login/link/{token}")
    async def link_use(request: Request, token: str) -> Response:
        await login_form(request)
        try:
            staff_id = wb.auth.use_link(token[:200], bo.now())
        except AuthError as e:
            return login_page(request, error=str(e), status=401)
        staff = bo.staff_member(staff_id)
        if staff is None:
            return login_page(request, error="这个账号已经不在工作人员名单里", status=401)
        return wb.start_session(staff, "link", PREFIX + "/tickets")

    @r.post("/logout")
    async def logout(got: tuple[Signed, FormData] = Form) -> Response:
        user, _ = got
        wb.auth.close_session(user.session_id)
        wb.record(user, "sign-out")
        resp = RedirectResponse(PREFIX + "/login", status_code=303)
        resp.delete_cookie(COOKIE, path=PREFIX)
        return secure(resp)

    # --- tickets ---------------------------------------------------------------------------------------------

    @r.get("/")
    async def home(user: Signed = User) -> Response:
        return RedirectResponse(PREFIX + "/tickets", status_code=303)

    @r.get("/tickets")
    async def tickets(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "tickets")
        q = request.query_params
        f = {k: q.get(k, "")[:64] for k in ("grid", "service", "status", "urgency")}
        if "status" not in q:
            f["status"] = "open"
        rows = _ticket_rows(bo, user.staff, f)
        grids = _grids_in_reach(bo, user.staff)
        latest = max((t["id"] for t in rows), default=0)
        return wb.page(
            "tickets.html",
            user,
            rows=rows,
            f=f,
            grids=grids,
            services=bo.ticket_services(),
            latest=latest,
            csv_url=f"{PREFIX}/tickets.csv?{urlencode(f)}",
        )

    @r.get("/tickets.csv")
    async def tickets_csv(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "tickets")
        q = request.query_params
        f = {k: q.get(k, "")[:64] for k in ("grid", "service", "status", "urgency")}
        rows = _ticket_rows(bo, user.staff, f, limit=100_000)
        wb.record(user, "export tickets", detail=urlencode(f))
        body = figs.tickets_csv(rows, bo.tz)
        stamp = bo.now().astimezone(bo.tz).strftime("%Y%m%d")
        return secure(
            Response(
                body.encode("utf-8"),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="tickets-{stamp}.csv"'},
            )
        )

    @r.get("/alerts.json")
    async def alerts(user: Signed = User) -> Response:
        """What the page shows live: the urgent open tickets in reach, and the newest ticket's number."""
        rows = _ticket_rows(bo, user.staff, {"status": "open", "urgency": "urgent"}, limit=20)
        newest = _ticket_rows(bo, user.staff, {"status": ""}, limit=1)
        return secure(
            JSONResponse(
                {
                    "urgent": [
                        {"id": t["id"], "title": t["title"], "place": t["place"], "group": t["groups"]}
                        for t in rows[:5]
                    ],
                    "urgent_count": len(rows),
                    "latest": newest[0]["id"] if newest else 0,
                }
            )
        )

    def ticket_in_reach(user: Signed, ticket_id: int) -> Ticket:
        with bo.store.session() as s:
            t = s.get(Ticket, ticket_id)
        if t is None or not reaches(user.staff, t.community, t.grid):
            raise Refused(404, f"没有找到工单#{ticket_id}（或不在您负责的范围内）")
        return t

    @r.get("/tickets/{ticket_id}")
    async def ticket(request: Request, ticket_id: int, user: Signed = User) -> Response:
        wb.allowed(user, "tickets")
        if not 1 <= ticket_id < 2**31:
            raise Refused(404, "没有这个工单")
        t = ticket_in_reach(user, ticket_id)
        detail = _ticket_detail(bo, t)
        done = request.query_params.get("done", "")[:200]
        return wb.page("ticket.html", user, t=t, services=bo.ticket_services(), done=done, **detail)

    @r.get("/tickets/{ticket_id}/photos/{media_id}")
    async def photo(ticket_id: int, media_id: int, user: Signed = User) -> Response:
        wb.allowed(user, "tickets")
        if not (1 <= ticket_id < 2**31 and 1 <= media_id < 2**31):
            raise Refused(404, "没有这张照片")
        ticket_in_reach(user, ticket_id)
        with bo.store.session() as s:
            m = s.get(TicketMedia, media_id)
            rep = s.get(TicketReport, m.report_id) if m is not None else None
            if m is None or rep is None or rep.ticket_id != ticket_id:
                raise Refused(404, "没有这张照片")
            data, mime = m.data, m.mime
        if not mime.startswith("image/") or mime == "image/svg+xml":
            mime = "application/octet-stream"  # never rendered as a page
        return secure(Response(data, media_type=mime))

    def ticket_action(
        name: str, fn: Callable[[Signed, Ticket, FormData], Awaitable[str]]
    ) -> Callable[..., Awaitable[Response]]:
        async def run(ticket_id: int, got: tuple[Signed, FormData] = Form) -> Response:
            user, form = got
            wb.allowed(user, "tickets")
            t = ticket_in_reach(user, ticket_id)
            try:
                done = await fn(user, t, form)
            except (StatusError, CorrectionError) as e:
                raise Refused(400, str(e)) from None
            wb.record(user, name, f"ticket #{t.id}", done)
            return RedirectResponse(f"{PREFIX}/tickets/{t.id}?done={quote(done[:80])}", status_code=303)

        return run

    async def do_status(user: Signed, t: Ticket, form: FormData) -> str:
        status = _text(form, "status", 16)
        note = _text(form, "note", 1000)
        if status == "closed" and not note:
            raise StatusError("办结时请写一句处理说明，居民会在群里看到")
        changed = await bo.ports.tickets.set_status(
            t.id, status, note, by_id=user.staff.id, by_name=user.staff.name
        )
        label = TICKET_STATUS.get(status, status)
        return (
            f"已改为{label}"
            + ("" if changed else "（状态没有变化，说明已更新）")
            + (f"：{note}" if note else "")
        )

    async def do_reroute(user: Signed, t: Ticket, form: FormData) -> str:
        service = _text(form, "service", 64) or None
        urgency = _text(form, "urgency", 16) or None
        if service == t.service_code:
            service = None
        if urgency == t.urgency:
            urgency = None
        if service is None and urgency is None:
            raise CorrectionError("类别和紧急程度都没有改")
        desk = bo.ports.tickets
        c = desk.correct(t.id, service_code=service, urgency=urgency, staff_id=user.staff.id)
        desk.note(
            t.id,
            f"改派：{c.service_name}，{URGENCY.get(c.urgency, c.urgency)}",
            kind="reroute",
            by_id=user.staff.id,
            by_name=user.staff.name,
        )
        return f"已改派到【{c.service_name}】，{URGENCY.get(c.urgency, c.urgency)}"

    async def do_split(user: Signed, t: Ticket, form: FormData) -> str:
        report_id = _int(form, "report_id")
        with bo.store.session() as s:
            rep = s.get(TicketReport, report_id)
            if rep is None or rep.ticket_id != t.id:
                raise StatusError("这条反映不在这个工单里")
        new_id = bo.ports.tickets.split_report(report_id, by_id=user.staff.id, by_name=user.staff.name)
        return f"已把反映#{report_id}拆分为工单#{new_id}"

    async def do_note(user: Signed, t: Ticket, form: FormData) -> str:
        text = _text(form, "text", 2000)
        if not text:
            raise StatusError("备注不能为空")
        bo.ports.tickets.note(t.id, text, by_id=user.staff.id, by_name=user.staff.name)
        return "已添加备注"

    r.add_api_route(
        "/tickets/{ticket_id}/status", ticket_action("ticket status", do_status), methods=["POST"]
    )
    r.add_api_route(
        "/tickets/{ticket_id}/reroute", ticket_action("ticket reroute", do_reroute), methods=["POST"]
    )
    r.add_api_route("/tickets/{ticket_id}/split", ticket_action("ticket split", do_split), methods=["POST"])
    r.add_api_route("/tickets/{ticket_id}/note", ticket_action("ticket note", do_note), methods=["POST"])

    # --- knowledge -----------------------------------------------------------------------------------------

    def gaps_in_reach(user: Signed, status: tuple[str, ...] = ("open", "forwarded")) -> list[dict[str, Any]]:
        with bo.store.session() as s:
            rows = s.scalars(
                select(KnowledgeGap)
                .where(KnowledgeGap.status.in_(status))
                .order_by(KnowledgeGap.asked_at.desc())
                .limit(2000)
            ).all()
        out = []
        for g in rows:
            if not reaches(user.staff, g.community, bo.group(g.group_id).grid):
                continue
            out.append(
                {
                    "id": g.id,
                    "group": g.group_id,
                    "community": g.community,
                    "sender": g.sender,
                    "sender_name": g.sender_name,
                    "question": mask_pii(g.question),
                    "asked_at": g.asked_at.isoformat(),
                    "asked": g.asked_at,
                    "status": g.status,
                }
            )
        return out

    def communities_for(user: Signed) -> list[str]:
        scope = bo.scope(user.staff)
        return list(bo.communities()) if scope.everything else [scope.community]

    @r.get("/knowledge")
    async def knowledge(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "knowledge")
        groups = bo.ports.gaps.grouped(gaps_in_reach(user))
        comms = communities_for(user)
        loading = ""
        try:
            docs = [
                d
                for d in bo.library.documents()
                if not d.community or d.community in comms or bo.scope(user.staff).everything
            ]
        except KnowledgeUnavailable as e:
            docs, loading = [], str(e)
        faq = [e for e in bo.faq.written() if not e.community or e.community in comms]
        return wb.page(
            "knowledge.html",
            user,
            gap_groups=groups,
            docs=docs,
            ready=not loading,
            loading=loading,
            communities=comms,
            everything=bo.scope(user.staff).everything,
            faq=faq,
            config_faq=bo.faq.configured(),
            done=request.query_params.get("done", "")[:200],
        )

    @r.post("/knowledge/answer")
    async def answer(got: tuple[Signed, FormData] = Form) -> Response:
        user, form = got
        wb.allowed(user, "knowledge")
        ids = {
            int(x)
            for x in form.getlist("gap")
            if isinstance(x, str) and x.isascii() and x.isdigit() and len(x) < 10
        }
        questions = [q for q in _text(form, "questions", 4000).splitlines() if q.strip()]
        answer_text = _text(form, "answer", 1500)
        community = _text(form, "community", 64)
        if community not in communities_for(user) and not (
            community == "" and bo.scope(user.staff).everything
        ):
            raise Refused(403, "只能为您负责的社区写常见问题")
        mine = {g["id"]: g for g in gaps_in_reach(user)}
        gaps = [mine[i] for i in ids if i in mine]
        if not gaps:
            raise Refused(400, "这些问题已经答复过了，或不在您负责的范围内")
        try:
            entry = bo.faq.add(
                questions or [g["question"] for g in gaps], answer_text, community=community, by=user.staff.id
            )
        except FAQError as e:
            raise Refused(400, str(e)) from None
        bo.ports.gaps.answered([g["id"] for g in gaps])
        told = set()
        for g in gaps:
            if (g["group"], g["sender"]) in told:
                continue
            told.add((g["group"], g["sender"]))
            private = g["group"] == g["sender"]
            bo.tell(
                f"gap-answer:{g['id']}",
                Told(
                    group=g["group"],
                    text=ANSWER_TEXT.format(question=g["question"][:100], answer=mask_pii(answer_text)),
                    channel=bo.channel_of(g["group"]),
                    mentions=() if private else (g["sender"],),
                ),
            )
        wb.record(user, "answer gaps", f"faq #{entry}", f"{len(gaps)} questions: {answer_text[:200]}")
        done = f"已保存为常见问题#{entry}，并在群里答复了{len(told)}位居民"
        return RedirectResponse(f"{PREFIX}/knowledge?done={quote(done)}", status_code=303)

    @r.post("/knowledge/faq/{entry_id}/remove")
    async def faq_remove(entry_id: int, got: tuple[Signed, FormData] = Form) -> Response:
        user, _ = got
        wb.allowed(user, "knowledge")
        entry = next((e for e in bo.faq.written() if e.id == entry_id), None)
        if entry is None or (
            entry.community not in communities_for(user) and not bo.scope(user.staff).everything
        ):
            raise Refused(404, "没有这条常见问题")
        bo.faq.remove(entry_id)
        wb.record(user, "remove faq", f"faq #{entry_id}", "、".join(entry.questions)[:200])
        return RedirectResponse(f"{PREFIX}/knowledge?done={quote('已删除这条常见问题')}", status_code=303)

    @r.post("/knowledge/documents")
    async def upload(got: tuple[Signed, FormData] = Form) -> Response:
        user, form = got
        wb.allowed(user, "documents")
        community = _text(form, "community", 64)
        if community not in communities_for(user) and not (
            community == "" and bo.scope(user.staff).everything
        ):
            raise Refused(403, "只能给您负责的社区上传资料")
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise Refused(400, "请选择要上传的文件")
        try:
            done = bo.library.upload(file.filename, file.file, community, via="workbench")
        except UploadRefused as e:
            raise Refused(e.status, e.message) from None
        except KnowledgeUnavailable as e:
            raise Refused(503, str(e)) from None
        wb.record(
            user,
            "upload document",
            done.source,
            f"{done.community or '全部社区'}: {done.status}, {done.chunks} chunks",
        )
        return RedirectResponse(f"{PREFIX}/knowledge/document?key={quote(done.key)}&new=1", status_code=303)

    @r.get("/knowledge/document")
    async def document(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "knowledge")
        key = request.query_params.get("key", "")[:400]
        try:
            doc = next((d for d in bo.library.documents() if d.key == key), None)
            chunks = bo.library.passages(key) if doc is not None else []
        except KnowledgeUnavailable as e:
            raise Refused(503, str(e)) from None
        if doc is None or (
            doc.community
            and doc.community not in communities_for(user)
            and not bo.scope(user.staff).everything
        ):
            raise Refused(404, "没有这份资料")
        return wb.page(
            "document.html", user, doc=doc, chunks=chunks, new=bool(request.query_params.get("new"))
        )

    @r.post("/knowledge/documents/remove")
    async def remove(got: tuple[Signed, FormData] = Form) -> Response:
        user, form = got
        wb.allowed(user, "documents")
        source, community = _text(form, "source", 255), _text(form, "community", 64)
        if community not in communities_for(user) and not bo.scope(user.staff).everything:
            raise Refused(403, "只能删除您负责的社区的资料")
        try:
            removed = bo.library.remove(source, community)
        except KnowledgeUnavailable as e:
            raise Refused(503, str(e)) from None
        if not removed:
            raise Refused(404, f"没有找到资料“{source}”")
        wb.record(user, "remove document", source, community or "全部社区")
        return RedirectResponse(f"{PREFIX}/knowledge?done={quote('已删除资料' + source)}", status_code=303)

    # --- notices --------------------------------------------------------------------------------------------

    def draft_of(user: Signed, form: FormData | dict[str, Any], targets: list[str]) -> NoticeDraft:
        try:
            return bo.ports.notices.draft(
                targets,
                str(form.get("text", ""))[:1500],
                schedule=str(form.get("schedule", ""))[:64].strip(),
                ask_ack=str(form.get("ask_ack", "")) in ("1", "on", "true"),
                staff=user.staff,
            )
        except NoticeError as e:
            raise Refused(400, str(e)) from None

    def targets_of(form: FormData) -> list[str]:
        picked = [t for t in form.getlist("target") if isinstance(t, str) and t.strip()]
        extra = _text(form, "more", 300)
        picked += [w for w in extra.replace("，", "、").replace(",", "、").split("、") if w.strip()]
        return list(dict.fromkeys(t.strip()[:64] for t in picked))[:50]

    @r.get("/notices")
    async def notices(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "notices")
        svc = bo.ports.notices
        everything = bo.scope(user.staff).everything
        recent = svc.recent(30) if everything else svc.recent(30, created_by=user.staff.id)
        return wb.page("notices.html", user, recent=recent, options=_target_options(bo, user.staff))

    @r.get("/notices/count.json")
    async def notice_count(request: Request, user: Signed = User) -> Response:
        """The live count under the compose form: how many groups the picked targets reach."""
        wb.allowed(user, "notices")
        targets = [t[:64] for t in request.query_params.getlist("target") if t.strip()][:50]
        if not targets:
            return secure(JSONResponse({"count": 0, "groups": [], "error": ""}))
        try:
            d = bo.ports.notices.draft(targets, "-", staff=user.staff)
        except NoticeError as e:
            return secure(JSONResponse({"count": 0, "groups": [], "error": str(e)}))
        return secure(
            JSONResponse({"count": len(d.groups), "groups": [g.name for g in d.groups][:30], "error": ""})
        )

    @r.post("/notices/preview")
    async def notice_preview(got: tuple[Signed, FormData] = Form) -> Response:
        user, form = got
        wb.allowed(user, "notices")
        targets = targets_of(form)
        d = draft_of(user, form, targets)
        return wb.page(
            "notice_preview.html",
            user,
            d=d,
            targets=targets,
            text=str(form.get("text", ""))[:1500],
            schedule=_text(form, "schedule", 64),
            ask_ack=d.ask_ack,
        )

    @r.post("/notices/send")
    async def notice_send(got: tuple[Signed, FormData] = Form) -> Response:
        user, form = got
        wb.allowed(user, "notices")
        targets = targets_of(form)
        d = draft_of(user, form, targets)
        svc = bo.ports.notices
        nid = svc.create(d, created_by=user.staff.id, created_by_name=d.signature, source="workbench")
        svc.kick()
        wb.record(user, "send notice", f"notice #{nid}", f"{'、'.join(targets)}: {d.text[:200]}")
        return RedirectResponse(f"{PREFIX}/notices/{nid}", status_code=303)

    def notice_in_reach(user: Signed, notice_id: int) -> NoticeRecord:
        rep = bo.ports.notices.report(notice_id)
        if rep is None or not (bo.scope(user.staff).everything or rep.created_by == user.staff.id):
            raise Refused(404, f"没有找到通知#{notice_id}")
        return rep

    @r.get("/notices/{notice_id}")
    async def notice(notice_id: int, user: Signed = User) -> Response:
        wb.allowed(user, "notices")
        if not 1 <= notice_id < 2**31:
            raise Refused(404, "没有这条通知")
        rep = notice_in_reach(user, notice_id)
        live = rep.status in ("scheduled", "sending") or (
            rep.ask_ack and bo.now() - rep.created_at < timedelta(days=3)
        )
        return wb.page("notice.html", user, n=rep, run=rep.latest_run(), live=live)

    @r.post("/notices/{notice_id}/cancel")
    async def notice_cancel(notice_id: int, got: tuple[Signed, FormData] = Form) -> Response:
        user, _ = got
        wb.allowed(user, "notices")
        notice_in_reach(user, notice_id)
        try:
            bo.ports.notices.cancel(notice_id)
        except NoticeError as e:
            raise Refused(409, str(e)) from None
        wb.record(user, "cancel notice", f"notice #{notice_id}")
        return RedirectResponse(f"{PREFIX}/notices/{notice_id}", status_code=303)

    @r.post("/notices/{notice_id}/resend")
    async def notice_resend(notice_id: int, got: tuple[Signed, FormData] = Form) -> Response:
        user, _ = got
        wb.allowed(user, "notices")
        notice_in_reach(user, notice_id)
        try:
            n = bo.ports.notices.resend(notice_id)
        except NoticeError as e:
            raise Refused(409, str(e)) from None
        wb.record(user, "resend notice", f"notice #{notice_id}", f"{n} groups")
        return RedirectResponse(f"{PREFIX}/notices/{notice_id}", status_code=303)

    # --- groups -------------------------------------------------------------------------------------------------

    @r.get("/groups")
    async def groups(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "groups")
        everything = bo.scope(user.staff).everything
        all_g = bo.ports.groups.all()
        bound = [g for g in all_g if g.bound and reaches(user.staff, g.community, g.grid)]
        unbound = [g for g in all_g if not g.bound] if may(user.staff, "bind") or everything else []
        comms = {
            c: grids
            for c, grids in bo.communities().items()
            if everything or c == bo.scope(user.staff).community
        }
        if not everything and bo.scope(user.staff).grids:
            comms = {c: [x for x in grids if x in bo.scope(user.staff).grids] for c, grids in comms.items()}
        return wb.page(
            "groups.html",
            user,
            bound=bound,
            unbound=unbound,
            communities=comms,
            done=request.query_params.get("done", "")[:200],
        )

    @r.post("/groups/bind")
    async def bind(got: tuple[Signed, FormData] = Form) -> Response:
        user, form = got
        wb.allowed(user, "bind")
        group_id = _text(form, "group", 128)
        place = _text(form, "place", 130)
        community, _, grid = place.partition("|")
        tags = [t.strip()[:32] for t in _text(form, "tags", 200).replace("，", "、").split("、") if t.strip()]
        if not group_id:
            raise Refused(400, "请选择要绑定的群")
        try:
            _, g = bo.ports.groups.bind(
                group_id, community, grid, tags, by=user.staff.id, scope=bo.scope(user.staff)
            )
        except GroupError as e:
            raise Refused(400, str(e)) from None
        wb.record(user, "bind group", group_id, f"{community} {grid} {tags}")
        return RedirectResponse(
            f"{PREFIX}/groups?done={quote(f'已把“{g.name}”绑定到{g.place}')}", status_code=303
        )

    @r.post("/groups/unbind")
    async def unbind(got: tuple[Signed, FormData] = Form) -> Response:
        user, form = got
        wb.allowed(user, "bind")
        group_id = _text(form, "group", 128)
        g = bo.group(group_id)
        if g.source != "binding" or not reaches(user.staff, g.community, g.grid):
            raise Refused(404, "这个群不是在群里或工作台绑定的，或不在您负责的范围内")
        after = bo.ports.groups.unbind(group_id, by=user.staff.id)
        wb.record(user, "unbind group", group_id)
        return RedirectResponse(
            f"{PREFIX}/groups?done={quote(f'已解除“{after.name}”的绑定')}", status_code=303
        )

    # --- figures ----------------------------------------------------------------------------------------------

    @r.get("/figures")
    async def figures(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "figures")
        try:
            weeks = max(2, min(26, int(request.query_params.get("weeks", figs.DEFAULT_WEEKS))))
        except ValueError:
            weeks = figs.DEFAULT_WEEKS
        f = figs.compute(bo.store, user.staff, bo.now(), bo.tz, lambda g: bo.group(g).grid, weeks)
        return wb.page("figures.html", user, f=f, charts=f.charts(), weeks=weeks)

    # --- the record -----------------------------------------------------------------------------------------

    @r.get("/audit")
    async def audit(request: Request, user: Signed = User) -> Response:
        wb.allowed(user, "audit")
        return wb.page(
            "audit.html", user, actions=wb.auth.actions(300, request.query_params.get("staff", "")[:128])
        )

    return r


# --- queries the pages share ---------------------------------------------------------------------------------


def _find_staff(bo: Backoffice, who: str) -> StaffMember | None:
    """A staff member by chat id, or by name when exactly one has it."""
    if not who:
        return None
    found = bo.staff_member(who)
    if found is not None:
        return found
    named = [s for s in bo.staff() if s.name == who]
    return named[0] if len(named) == 1 else None


def _grids_in_reach(bo: Backoffice, staff: StaffMember) -> list[str]:
    scope = bo.scope(staff)
    out = []
    for c, grids in bo.communities().items():
        if not scope.everything and c != scope.community:
            continue
        out += [g for g in grids if scope.everything or not scope.grids or g in scope.grids]
    return list(dict.fromkeys(out))


def _ticket_rows(
    bo: Backoffice, staff: StaffMember, f: dict[str, str], limit: int = MAX_LIST
) -> list[dict[str, Any]]:
    """Tickets in reach, filtered; open urgent ones first, then the newest."""
    with bo.store.session() as s:
        q = select(Ticket).order_by(Ticket.id.desc()).limit(5000)
        if f.get("status") in ("open", "closed"):
            q = q.where(Ticket.status == f["status"])
        if f.get("urgency") in ("urgent", "normal"):
            q = q.where(Ticket.urgency == f["urgency"])
        if f.get("service"):
            q = q.where(Ticket.service_code == f["service"])
        if f.get("grid"):
            q = q.where(Ticket.grid == f["grid"])
        found = [t for t in s.scalars(q) if reaches(staff, t.community, t.grid)]
        found.sort(key=lambda t: (not (t.urgency == "urgent" and t.status == "open"), -t.id))
        found = found[:limit]
        reports: dict[int, list[TicketReport]] = {t.id: [] for t in found}
        if found:
            for rep in s.scalars(select(TicketReport).where(TicketReport.ticket_id.in_(list(reports)))):
                if rep.ticket_id is not None:
                    reports[rep.ticket_id].append(rep)
    rows = []
    for t in found:
        rs = reports[t.id]
        rows.append(
            {
                "id": t.id,
                "title": mask_pii(t.title),
                "service": t.service_name,
                "service_code": t.service_code,
                "place": mask_pii(t.place),
                "community": t.community,
                "grid": t.grid,
                "urgency": t.urgency,
                "status": t.status,
                "status_notes": mask_pii(t.status_notes),
                "sync": t.sync,
                "reports": len(rs),
                "reporters": len({x.sender for x in rs}),
                "groups": "、".join(dict.fromkeys(x.group_id for x in rs)),
                "created_at": t.created_at,
                "updated_at": t.updated_at,
                "urgent_open": t.urgency == "urgent" and t.status == "open",
            }
        )
    return rows


def _ticket_detail(bo: Backoffice, t: Ticket) -> dict[str, Any]:
    with bo.store.session() as s:
        reports = list(
            s.scalars(select(TicketReport).where(TicketReport.ticket_id == t.id).order_by(TicketReport.id))
        )
        media: dict[int, list[int]] = {}
        if reports:
            for mid, rid in s.execute(
                select(TicketMedia.id, TicketMedia.report_id).where(
                    TicketMedia.report_id.in_([x.id for x in reports])
                )
            ):
                media.setdefault(rid, []).append(mid)
        events = list(s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == t.id)))
        corrections = list(s.scalars(select(TicketCorrection).where(TicketCorrection.ticket_id == t.id)))
        said = list(s.scalars(select(TicketNotice).where(TicketNotice.ticket_id == t.id)))
        surveys = list(s.scalars(select(SatisfactionSurvey).where(SatisfactionSurvey.ticket_id == t.id)))
        near: list[Ticket] = []
        points = [(x.lat, x.lon) for x in reports if x.lat is not None and x.lon is not None]
        if t.lat is not None and t.lon is not None:
            points.append((t.lat, t.lon))
        if points:
            lat0, lon0 = points[0]
            d = 0.01  # about 1 km
            near = list(
                s.scalars(
                    select(Ticket)
                    .where(
                        Ticket.id != t.id,
                        Ticket.lat.between(lat0 - d, lat0 + d),
                        Ticket.lon.between(lon0 - d, lon0 + d),
                        Ticket.status == "open",
                    )
                    .limit(20)
                )
            )
    history: list[tuple[datetime, str, str, str]] = []  # (when, who, what, css class)
    for x in reports:
        who = x.sender_name or x.sender
        history.append(
            (x.created_at, who, f"在“{x.group_id}”反映（{REPORT_STATE.get(x.state, x.state)}）", "report")
        )
    for e in events:
        who = e.staff_name or ("工单系统" if e.kind == "status" else "")
        if e.kind == "status":
            what = f"状态：{TICKET_STATUS.get(e.status, e.status)}" + (f"（{e.text}）" if e.text else "")
        else:
            what = {"note": "备注：", "reroute": "", "split": "", "satisfaction": ""}.get(e.kind, "") + e.text
        history.append((e.created_at, who, what, e.kind))
    for c in corrections:
        staff = bo.staff_member(c.staff_id)
        history.append(
            (
                c.created_at,
                staff.name if staff else c.staff_id,
                f"更正：{c.old_service_code}/{c.old_urgency} → {c.service_code}/{c.urgency}",
                "reroute",
            )
        )
    for n in said:
        if n.kind in ("alert", "survey"):
            continue
        state = "已发到群里" if n.state == "sent" else "待发送"
        history.append(
            (n.created_at, "家门口助手", f"{state}（{n.group_id}）：{mask_pii(n.text)[:140]}", "said")
        )
    history.sort(key=lambda h: h[0])
    plot = ""
    pins = [
        (x.lat, x.lon, f"反映#{x.id} {x.place or ''}", True)
        for x in reports
        if x.lat is not None and x.lon is not None
    ]
    if not pins and t.lat is not None and t.lon is not None:
        pins = [(t.lat, t.lon, t.title, True)]
    if pins:
        others = [
            (n.lat, n.lon, f"工单#{n.id} {n.title}", False)
            for n in near
            if n.lat is not None and n.lon is not None
        ]
        plot = svg.place_plot([(float(a), float(b), c, d) for a, b, c, d in pins + others])
    return {
        "reports": reports,
        "media": media,
        "history": history,
        "plot": plot,
        "near": [n for n in near if n.lat is not None and math.isfinite(n.lat)],
        "surveys": surveys,
    }


def _target_options(bo: Backoffice, staff: StaffMember) -> list[tuple[str, list[str]]]:
    """What the compose form offers to tick, in the staff member's reach: (heading, target words)."""
    scope = bo.scope(staff)
    groups = [g for g in bo.ports.groups.all() if g.bound and reaches(staff, g.community, g.grid)]
    comms = [c for c in bo.communities() if scope.everything or (c == scope.community and not scope.grids)]
    grids: list[str] = []
    for c, gs in bo.communities().items():
        for g in gs:
            if scope.everything:
                grids.append(f"{c}{g}")
            elif c == scope.community and (not scope.grids or g in scope.grids):
                grids.append(g)
    tags = sorted({t for g in groups for t in g.tags})
    out = [
        ("全部", ["全部"]),
        ("社区", comms),
        ("网格", grids),
        ("标签", tags),
        ("群", [g.name for g in groups]),
    ]
    return [(h, items) for h, items in out if items]
