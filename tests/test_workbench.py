"""The staff workbench in-process: the real App, desk, notices and the built-in backend on a loopback port,
the web app driven through ASGI in the test's own event loop, and the test's clock.

The browser tests (tests/test_workbench_browser.py) drive the same pages through a real `doorstep serve`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import ManualClock
from bot.store.models import (
    SatisfactionSurvey,
    StaffAction,
    Ticket,
    TicketCorrection,
    TicketEvent,
    TicketReport,
)
from bot.web.app import create_web_app
from tests.conftest import TICKETS_API_KEY
from tests.support import RecordingChannel, Say
from workbench.auth import Auth
from workbench.web import PREFIX, Workbench

PASSWORD = "grid-worker-pass-1"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(autouse=True)
def open311_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEYS", TICKETS_API_KEY)


class Web:
    """A browser-less client of the workbench: one cookie jar, the session's CSRF token read from pages."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.web = create_web_app(app, manage_lifecycle=False)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.web), base_url="http://127.0.0.1", follow_redirects=False
        )
        self.csrf = ""

    async def get(self, path: str, **kw: object) -> httpx.Response:
        r = await self.http.get(path, **kw)  # type: ignore[arg-type]
        m = CSRF.search(r.text) if r.headers.get("content-type", "").startswith("text/html") else None
        if m:
            self.csrf = m.group(1)
        return r

    async def post(self, path: str, data: dict[str, object] | None = None, *, csrf: bool = True, **kw: object) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body["csrf"] = self.csrf
        return await self.http.post(path, data=body, **kw)  # type: ignore[arg-type]

    async def sign_in(self, account: str, password: str = PASSWORD) -> httpx.Response:
        await self.get(PREFIX + "/login")
        r = await self.post(PREFIX + "/login", {"account": account, "password": password, "next": ""})
        if r.status_code == 303:
            await self.get(PREFIX + "/tickets")  # the session's own CSRF token
        return r


def auth_of(app: App) -> Auth:
    wb = app.config.main.workbench
    return Auth(app.store, session_hours=wb.session_hours, idle_minutes=wb.idle_minutes, link_minutes=wb.link_minutes)


@pytest.fixture
async def web(tapp: App) -> AsyncIterator[Web]:
    auth = auth_of(tapp)
    for sid in ("s_wang", "s_zhao", "s_li", "s_wuye"):
        staff = tapp.config.staff_member(sid)
        assert staff is not None
        auth.set_password(staff, PASSWORD, tapp.clock.now())
    w = Web(tapp)
    yield w
    await w.http.aclose()


async def settle(app: App) -> None:
    await app.tick()
    await app.sender.drain()


async def report(app: App, say: Say, text: str, **kw: object) -> int:
    await app.handle(say(text, **kw))  # type: ignore[arg-type]
    await settle(app)
    await settle(app)
    with app.store.session() as s:
        r = s.scalars(select(TicketReport).order_by(TicketReport.id.desc())).first()
        assert r is not None and r.ticket_id is not None
        return r.ticket_id


async def test_pages_render_for_a_grid_worker(tapp: App, web: Web, say: Say) -> None:
    tid = await report(tapp, say, "3号楼门口井盖松了，差点摔了")
    r = await web.sign_in("s_wang")
    assert r.status_code == 303, r.text
    for path in ("/tickets", f"/tickets/{tid}", "/knowledge", "/notices", "/groups", "/figures"):
        got = await web.get(PREFIX + path)
        assert got.status_code == 200, (path, got.text[:2000])
        assert "default-src 'self'" in got.headers["content-security-policy"]
    assert "井盖" in (await web.get(PREFIX + "/tickets")).text
