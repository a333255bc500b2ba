"""The staff workbench in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) through a REAL
`doorstep serve` process (tests/procs.py): one serve and one browser for the whole module, the steps in order.

A 网格员 (王网格员, 网格3) whose password was set by `doorstep staff set-password` signs in; a report posted in the
simulator appears in the list; she closes it with a note and the group is told; re-routes another; sees an urgent
report appear live; answers a knowledge gap, and the resident's next same question is answered from the new FAQ;
sends a notice to her grid and sees its deliveries and 回复1 receipts; signs out, and every page refuses.

Each page is photographed at desktop and phone widths; with DOORSTEP_SCREENSHOTS=docs/img the pictures of
docs/staff.md are written there (`DOORSTEP_SCREENSHOTS=docs/img .venv/bin/pytest tests/test_workbench_browser.py`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browsers import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.procs import ROOT, Procs, Serve, wait_for

pytestmark = [pytest.mark.browser, needs_chromium]

PASSWORD = "wang-grid3-2026"
GROUP = "幸福里3号楼"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, proc_config: Path) -> Iterator[Serve]:
    ps = Procs(tmp_path_factory.mktemp("workbench"), proc_config)
    p = ps.serve("serve")
    # the password as an admin sets it: `doorstep staff set-password`, its own process, on serve's store
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "staff", "set-password", "s_wang", "--password-stdin"],
        input=PASSWORD + "\n",
        env=p.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    p.wait_for_index = True
    try:
        p.start(timeout=120)
        yield p
    finally:
        ps.close()
        print(ps.logs())


class Browser:
    """One Chromium, a desktop page signed in as the 网格员, and a phone-sized page sharing her cookies."""

    def __init__(self, pw: Any, base: str, shots: Path) -> None:
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.base = base
        self.shots = shots
        self.desk_ctx = self.browser.new_context(viewport=DESKTOP, locale="zh-CN")
        self.page = self.desk_ctx.new_page()
        self.phone_ctx: Any = None
        self.requests: list[str] = []
        self.page.on("request", lambda req: self.requests.append(req.url))

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        """This page at desktop width, then on a phone-sized screen (the same URL with the same session; a
        page that answers a form post is resized instead, since it cannot be fetched again)."""
        self.page.screenshot(path=str(self.shots / f"staff-{name}-desktop.png"), full_page=True)
        if self.page.url.endswith("/preview"):
            self.page.set_viewport_size(PHONE)
            self.page.screenshot(path=str(self.shots / f"staff-{name}-phone.png"), full_page=True)
            self.page.set_viewport_size(DESKTOP)
            return
        if self.phone_ctx is None:
            self.phone_ctx = self.browser.new_context(
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
            )
        self.phone_ctx.add_cookies(self.desk_ctx.cookies())
        phone = self.phone_ctx.new_page()
        phone.goto(self.page.url)
        phone.screenshot(path=str(self.shots / f"staff-{name}-phone.png"), full_page=True)
        phone.close()

    def close(self) -> None:
        self.browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("shots")
    yield where
    target = os.environ.get("DOORSTEP_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in where.glob("*.png"):
            shutil.copy(png, Path(target) / png.name)


@pytest.fixture(scope="module")
def b(serve: Serve, shots: Path) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        br = Browser(pw, serve.url, shots)
        try:
            yield br
        finally:
            br.close()


def bot_said(serve: Serve, group: str, needle: str, timeout: float = 30) -> str:
    def found() -> str:
        for m in serve.messages(group):
            if m["from_bot"] and needle in m["text"]:
                return str(m["text"])
        return ""

    return str(wait_for(f"the bot to say {needle!r} in {group}", found, timeout))


def test_sign_in_as_a_grid_worker(b: Browser) -> None:
    from playwright.sync_api import expect

    b.go("/staff/")
    expect(b.page).to_have_url(re.compile(r"/staff/login"))
    b.shot("login")
    b.page.fill("input[name=account]", "s_wang")
    b.page.fill("input[name=password]", "not-her-password")
    b.page.click("button:has-text('登录')")
    expect(b.page.locator(".err")).to_have_text("账号或密码不对")
    b.page.fill("input[name=account]", "s_wang")
    b.page.fill("input[name=password]", PASSWORD)
    b.page.click("button:has-text('登录')")
    expect(b.page).to_have_url(re.compile(r"/staff/tickets$"))
    expect(b.page.locator(".me .who")).to_have_text("王网格员")


def test_a_report_in_the_simulator_appears_and_closing_it_tells_the_group(b: Browser, serve: Serve) -> None:
    from playwright.sync_api import expect

    serve.post(GROUP, "u_zhang", "3号楼门口井盖松了，差点摔了", sender_name="张师傅")
    ack = bot_said(serve, GROUP, "已收到，工单号")
    tid = re.search(r"#(\d+)", ack).group(1)  # type: ignore[union-attr]
    expect(b.page.locator("#newer")).to_be_visible(timeout=15_000)  # the list notices it live
    b.page.click("#newer a")
    row = b.page.locator(f"li.ticket[data-id='{tid}']")
    expect(row).to_contain_text("井盖")
    b.shot("tickets")
    wait_for("the ticket to reach the backend", lambda: serve.settled(), 30)
    row.locator("a").click()
    expect(b.page.locator("h1")).to_contain_text(f"#{tid}")
    b.shot("ticket")
    form = b.page.locator("#status-form")
    form.locator("select[name=status]").select_option("closed")
    form.locator("textarea[name=note]").fill("已更换井盖")
    form.locator("button").click()
    expect(b.page.locator("#done")).to_contain_text("已改为已办结")
    expect(b.page.locator("#status")).to_have_text("已办结")
    told = bot_said(serve, GROUP, f"工单 #{tid}")
    told = bot_said(serve, GROUP, "已处理完毕")
    assert "已更换井盖" in told and "满意" in told  # the note, and the 12345 question


def test_re_route_a_ticket(b: Browser, serve: Serve) -> None:
    from playwright.sync_api import expect

    serve.post("幸福里5号楼", "u_liu", "5号楼1单元楼道灯不亮了好几天", sender_name="刘阿姨")
    ack = bot_said(serve, "幸福里5号楼", "已收到，工单号")
    tid = re.search(r"#(\d+)", ack).group(1)  # type: ignore[union-attr]
    b.go(f"/staff/tickets/{tid}")
    form = b.page.locator("#reroute-form")
    form.locator("select[name=service]").select_option("public_safety")
    form.locator("select[name=urgency]").select_option("urgent")
    form.locator("button").click()
    expect(b.page.locator("#done")).to_contain_text("已改派到【安全隐患】，紧急")
    expect(b.page.locator(".history")).to_contain_text("改派：安全隐患")
    detail = serve.http.get(
        f"/admin/tickets/{tid}", headers={"Authorization": "Bearer test-procs-admin-token"}
    )
    assert detail.json()["service_code"] == "public_safety" and detail.json()["urgency"] == "urgent"


def test_an_urgent_report_is_alerted_live(b: Browser, serve: Serve) -> None:
    from playwright.sync_api import expect

    b.go("/staff/tickets")
    serve.post(GROUP, "u_chen", "3号楼2单元楼道里燃气味很大，快来人", sender_name="小陈")
    banner = b.page.locator("#alerts")
    expect(banner).to_be_visible(timeout=15_000)  # no reload: the page polls
    expect(banner).to_contain_text("紧急工单")
    b.page.reload()
    expect(b.page.locator("li.ticket.urgent").first).to_contain_text("燃气")
    b.shot("tickets-urgent")


def test_answer_a_knowledge_gap_and_the_next_same_question_gets_it(b: Browser, serve: Serve) -> None:
    from playwright.sync_api import expect

    question = "小区停车位怎么收费"
    first = serve.ask(GROUP, "u_gap", "@家门口助手 " + question)
    assert "没有找到答案" in first
    b.go("/staff/knowledge")
    card = b.page.locator("section.gap", has_text=question)
    expect(card).to_be_visible()
    b.shot("knowledge")
    card.locator("textarea[name=answer]").fill("地面停车位每月150元，到物业服务中心登记办理。")
    card.locator("button").click()
    expect(b.page.locator("#done")).to_contain_text("已保存为常见问题")
    told = bot_said(serve, GROUP, "社区工作人员答复")
    assert question in told and "每月150元" in told
    again = serve.ask(GROUP, "u_gap2", "@家门口助手 " + question)
    assert "地面停车位每月150元" in again  # from the new FAQ entry, no restart
    b.go("/staff/knowledge")
    b.page.locator("table.docs a").first.click()
    expect(b.page.locator("ol.chunks li").first).to_be_visible()
    b.shot("document")


def test_send_a_notice_to_a_grid_and_see_its_receipts(b: Browser, serve: Serve) -> None:
    from playwright.sync_api import expect

    b.go("/staff/notices")
    b.page.locator("label.chip", has_text="网格3").locator("input").check()
    expect(b.page.locator("#count")).to_contain_text("共 2 个群", timeout=10_000)  # the live count
    b.page.fill("#compose textarea[name=text]", "明天9点到12点停水，请提前储水")
    b.page.check("#compose input[name=ask_ack]")
    b.shot("notices")
    b.page.click("#compose button:has-text('预览')")
    expect(b.page.locator("#group-count")).to_have_text("2")
    b.shot("notice-preview")
    b.page.click("button:has-text('确认发送')")
    expect(b.page).to_have_url(re.compile(r"/staff/notices/\d+$"))
    bot_said(serve, GROUP, "明天9点到12点停水")
    bot_said(serve, "幸福里5号楼", "明天9点到12点停水")
    serve.post(GROUP, "u_zhang", "1", sender_name="张师傅")
    serve.post(GROUP, "u_liu", "收到", sender_name="刘阿姨")
    row = b.page.locator("tr[data-group='幸福里3号楼']")
    expect(row.locator(".acks")).to_have_text("2", timeout=20_000)  # the page refreshes itself
    expect(b.page.locator("tr[data-group='幸福里5号楼'] td").nth(1)).to_have_text("已送达")
    b.shot("notice")


def test_groups_and_figures_pages(b: Browser, serve: Serve) -> None:
    from playwright.sync_api import expect

    serve.post("新开的9号楼群", "u_new", "大家好", sender_name="新居民")
    b.go("/staff/groups")
    expect(b.page.locator("h1").first).to_be_visible()
    b.shot("groups")
    b.go("/staff/figures")
    expect(b.page.locator("svg.chart").first).to_be_visible()
    expect(b.page.locator(".gauges")).to_contain_text("%")
    b.shot("figures")
    # offline: nothing the workbench (or the API docs page) loaded came from another origin
    b.go("/docs")
    expect(b.page.locator(".swagger-ui .info .title")).to_contain_text("Doorstep", timeout=15_000)
    foreign = [u for u in b.requests if not u.startswith(serve.url) and not u.startswith("data:")]
    assert not foreign, foreign


def test_sign_out_and_every_page_refuses(b: Browser, serve: Serve) -> None:
    from playwright.sync_api import expect

    b.go("/staff/tickets")
    b.page.click("button:has-text('退出')")
    expect(b.page).to_have_url(re.compile(r"/staff/login$"))
    for path in (
        "/staff/",
        "/staff/tickets",
        "/staff/tickets/1",
        "/staff/knowledge",
        "/staff/notices",
        "/staff/notices/1",
        "/staff/groups",
        "/staff/figures",
        "/staff/audit",
        "/staff/tickets.csv",
    ):
        b.go(path)
        expect(b.page).to_have_url(re.compile(r"/staff/login"))
        expect(b.page.locator("input[name=password]")).to_be_visible()
    r = b.page.request.get(serve.url + "/staff/alerts.json")
    assert r.status == 401
