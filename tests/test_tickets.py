"""Reports become tickets through the real pipeline, against the built-in backend on a real loopback port."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend import Backend, create_backend_app
from backend.models import ServiceRequest
from backend.testing import running_backend
from backend.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from bot.app import App
from bot.builtin_backend import backend_settings
from bot.clock import ManualClock
from bot.config import Config, load_config
from core.message import Location
from core.ports import RemoteRequest
from store.models import InboundMessage, Ticket, TicketOutbox, TicketReport
from tests.conftest import ROOT, TICKETS_API_KEY
from tests.support import RecordingChannel, Say, documented_signature
from tickets.desk import ReportDesk
from tickets.open311 import GeoReportClient
from tickets.webhook import webhook_router

KEY = TICKETS_API_KEY  # configured: the bot's client and the backend agree on it
JPEG = b"\xff\xd8\xff\xe0" + b"photo" * 50


@pytest.fixture(autouse=True)
def open311_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEYS", KEY)


def desk_of(app: App) -> ReportDesk:
    assert isinstance(app.services.tickets, ReportDesk)
    return app.services.tickets


async def say_all(app: App, *msgs) -> list:
    outcomes = [await app.handle(m) for m in msgs]
    await app.sender.drain()
    return outcomes


async def settle(app: App) -> None:
    await app.tick()
    await app.sender.drain()


def requests_in(be: Backend) -> list[ServiceRequest]:
    with be.sessions() as s:
        return list(s.scalars(select(ServiceRequest).order_by(ServiceRequest.id)).all())


async def test_report_is_acknowledged_then_filed(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    [o] = await say_all(tapp, say("3号楼门口井盖松了，差点摔了"))
    assert o.handler == "report"
    [ack] = channel.sent
    assert ack.text.startswith("已收到，工单号 #1，已转交【市政设施】")
    assert "3号楼门口" in ack.text and ack.mentions == ("u_zhang",)
    with tapp.store.session() as s:  # committed before the backend was even tried
        assert s.scalars(select(TicketReport)).one().state == "filed"
    await settle(tapp)
    [req] = requests_in(backend[0])
    assert req.service_code == "municipal_facility" and "井盖" in req.description
    assert req.attributes["grid"] == "网格3" and req.attributes["community"] == "示例社区"
    with tapp.store.session() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.remote_id == str(req.id) and t.sync == "sent"


async def test_missing_place_is_asked_once(tapp: App, channel: RecordingChannel, say: Say) -> None:
    await say_all(tapp, say("电梯又坏了，爬楼累死了"))
    [ask] = channel.texts()
    assert ask.startswith("请问具体位置在哪里？")
    await say_all(tapp, say("5号楼2单元"))
    assert len(channel.sent) == 2
    assert "工单号 #1" in channel.sent[1].text and "5号楼2单元" in channel.sent[1].text


async def test_missing_place_files_anyway_after_timeout(
    tapp: App, channel: RecordingChannel, clock: ManualClock, say: Say, backend
) -> None:
    await say_all(tapp, say("楼道灯不亮好几天了"))
    assert len(channel.sent) == 1
    clock.advance(tapp.config.main.tickets.place_timeout_seconds + 1)
    await settle(tapp)
    assert "已收到，工单号 #1" in channel.sent[-1].text
    [req] = requests_in(backend[0])
    assert "示例社区" in req.address  # the group's community and grid stand in for the place


async def test_photo_before_and_location_after_join_the_report(
    tapp: App, backend, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    await say_all(tapp, say("", image=JPEG))
    clock.advance(20)
    await say_all(tapp, say("东门路灯不亮了"))
    clock.advance(20)
    await say_all(tapp, say("", location=Location(39.16, 117.21, "幸福里东门")))
    assert len(channel.sent) == 1  # photos and the location are silent
    await settle(tapp)
    [req] = requests_in(backend[0])
    assert req.media_url.endswith("/media/1")
    with TestClient(create_backend_app(backend[0], manage_lifecycle=False)) as c:
        assert c.get("/open311/v2/media/1").content == JPEG
    with tapp.store.session() as s:
        r = s.scalars(select(TicketReport)).one()
        assert (r.lat, r.lon) == (39.16, 117.21)


async def test_photo_from_someone_else_or_too_late_does_not_join(
    tapp: App, backend, clock: ManualClock, say: Say
) -> None:
    await say_all(tapp, say("", image=JPEG, sender="u_other"))
    await say_all(tapp, say("", image=JPEG))
    clock.advance(61)
    await say_all(tapp, say("3号楼门口垃圾没人清"))
    await settle(tapp)
    [req] = requests_in(backend[0])
    assert not req.media_url


async def test_duplicates_merge_and_everyone_is_told(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    await say_all(tapp, say("3号楼门口井盖松了"))
    await say_all(
        tapp, say("三号楼门口的井盖松动，晃得厉害", sender="u_li", sender_name="李阿姨", group="幸福里5号楼")
    )
    await say_all(tapp, say("3号楼门口那个井盖还没人修吗", sender="u_wang", sender_name="王大爷"))
    merged = [s for s in channel.sent if "已合并到工单 #1" in s.text]
    assert len(merged) == 2 and merged[0].text.startswith("已有居民反映，已合并到工单 #1，处理后会通知大家")
    await settle(tapp)
    assert len(requests_in(backend[0])) == 1
    with tapp.store.session() as s:
        assert {r.sender for r in s.scalars(select(TicketReport).where(TicketReport.ticket_id == 1))} == {
            "u_zhang",
            "u_li",
            "u_wang",
        }
    backend[0].update_status(1, "closed", "已更换井盖，联系电话13812345678", "街道城管科")
    await desk_of(tapp).poll_once()
    await settle(tapp)
    closed = [s for s in channel.sent if "已处理完毕" in s.text]
    assert {(s.group, s.mentions) for s in closed} == {
        ("幸福里3号楼", ("u_zhang", "u_wang")),
        ("幸福里5号楼", ("u_li",)),
    }
    assert closed[0].text.startswith("工单 #1（3号楼门口 井盖松了）已处理完毕")  # place, then problem
    assert "138****5678" in closed[0].text and "13812345678" not in closed[0].text
    await desk_of(tapp).poll_once()  # polling again tells nobody twice
    await settle(tapp)
    assert len([s for s in channel.sent if "已处理完毕" in s.text]) == 2


async def test_different_place_or_service_is_a_new_ticket(
    tapp: App, channel: RecordingChannel, say: Say
) -> None:
    await say_all(
        tapp,
        say("3号楼门口井盖松了"),
        say("8号楼门口井盖松了", sender="u_b"),
        say("3号楼门口垃圾堆成山了", sender="u_c"),
    )
    assert [s.text.split("，")[1] for s in channel.sent] == ["工单号 #1", "工单号 #2", "工单号 #3"]


async def test_phone_and_id_numbers_are_masked_in_the_group(
    tapp: App, channel: RecordingChannel, say: Say
) -> None:
    await say_all(tapp, say("3号楼门口井盖松了，我电话13812345678，身份证110101199003071234"))
    text = channel.sent[0].text
    assert "13812345678" not in text and "110101199003071234" not in text
    with tapp.store.session() as s:
        t = s.get(Ticket, 1)
        assert t is not None and "138****5678" in t.description and "1101**********1234" in t.description


async def test_signed_webhook_tells_the_group(
    tapp: App, channel: RecordingChannel, say: Say, clock: ManualClock
) -> None:
    await say_all(tapp, say("3号楼门口井盖松了"))
    await settle(tapp)
    desk = desk_of(tapp)
    web = FastAPI()
    web.include_router(webhook_router(desk, tapp.config.webhook_secret))
    doc = {"service_request_id": "1", "status": "closed", "status_notes": "已修好"}
    body = json.dumps({**doc, "updated_datetime": clock.now().isoformat()}).encode()
    ts = int(clock.now().timestamp())
    secret = tapp.config.webhook_secret
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://bot") as c:
        bad = await c.post(
            "/tickets/webhook",
            content=body,
            headers={SIGNATURE_HEADER: "sha256=00", TIMESTAMP_HEADER: str(ts)},
        )
        assert bad.status_code == 401
        stale = await c.post(
            "/tickets/webhook",
            content=body,
            headers={
                SIGNATURE_HEADER: documented_signature(secret, ts - 3600, body),
                TIMESTAMP_HEADER: str(ts - 3600),
            },
        )
        assert stale.status_code == 401
        ok = await c.post(
            "/tickets/webhook",
            content=body,
            headers={SIGNATURE_HEADER: documented_signature(secret, ts, body), TIMESTAMP_HEADER: str(ts)},
        )
        assert ok.status_code == 200 and ok.json()["changed"] is True
    await tapp.sender.drain()
    assert channel.sent[-1].text.startswith("工单 #1（3号楼门口 井盖松了）已处理完毕（已修好")


async def test_status_lookup_and_my_tickets(tapp: App, backend, channel: RecordingChannel, say: Say) -> None:
    await say_all(tapp, say("3号楼门口井盖松了"))
    await settle(tapp)
    backend[0].update_status(1, "open", "已派人查看", "街道城管科")
    await say_all(tapp, say("查询工单 #1", mention=True))
    assert (
        "工单 #1（3号楼门口 井盖松了）：处理中，负责单位：街道城管科，说明：已派人查看"
        in channel.sent[-1].text
    )
    await say_all(tapp, say("查询工单 #99", mention=True))
    assert "没有找到工单 #99" in channel.sent[-1].text
    await say_all(tapp, say("我的工单", mention=True))
    assert "#1 3号楼门口 井盖松了：处理中" in channel.sent[-1].text
    await say_all(tapp, say("我的工单", mention=True, sender="u_new"))
    assert "您还没有反映过问题" in channel.sent[-1].text


async def test_my_tickets_is_answered_without_a_mention(
    tapp: App, channel: RecordingChannel, say: Say
) -> None:
    """The demo's step 8: "我的工单" unaddressed in an `auto` group was ignored as "not addressed"."""
    await say_all(tapp, say("3号楼门口井盖松了"))
    await settle(tapp)
    (outcome,) = await say_all(tapp, say("我的工单"))
    assert outcome.status == "handled" and outcome.handler == "status"
    assert channel.sent[-1].text.startswith("您反映过的工单（最近1个）：\n#1 3号楼门口 井盖松了：处理中")
    (outcome,) = await say_all(tapp, say("查询工单 #1", sender="u_other"))
    assert outcome.handler == "status" and "工单 #1（3号楼门口 井盖松了）：处理中" in channel.sent[-1].text
    with tapp.store.session() as s:
        rows = s.scalars(
            select(InboundMessage).where(InboundMessage.text.in_(["我的工单", "查询工单 #1"]))
        ).all()
        assert [(r.status, r.reason) for r in rows] == [("handled", "status"), ("handled", "status")]


async def test_a_stale_update_never_moves_a_ticket_backwards(
    tapp: App, backend, channel: RecordingChannel, say: Say, clock: ManualClock
) -> None:
    """The demo's step 7: the creation's "open" webhook arrived after a poll had seen the ticket closed, and the
    group was told 已处理完毕, 已重新打开, 已处理完毕."""
    be = backend[0]
    await say_all(tapp, say("3号楼门口井盖松了"))
    await settle(tapp)
    desk = desk_of(tapp)
    created = RemoteRequest.from_doc(Backend.request_doc(requests_in(be)[0]))  # the creation event, held back
    # the backend keeps microseconds: a creation and a closing within one second are still ordered
    clock.advance(0.25)
    closed = Backend.request_doc(be.update_status(1, "closed", "已更换井盖", "街道城管科"))
    assert created.updated_datetime < closed["updated_datetime"]
    assert await desk.poll_once() == 1
    assert desk.apply_remote(created) is False  # late and older: ignored
    assert desk.apply_remote(RemoteRequest.from_doc(closed)) is False  # the webhook of the same change
    await settle(tapp)
    told = [s.text for s in channel.sent if s.text.startswith("工单 #1")]
    assert len(told) == 1 and "已处理完毕" in told[0]
    with tapp.store.session() as s:
        t = s.get(Ticket, 1)
        assert t is not None and (t.status, t.status_version, t.status_notes) == ("closed", 1, "已更换井盖")
    # a real reopening, newer than the closing, is applied and told once
    clock.advance(0.25)
    reopened = be.update_status(1, "open", "居民反映仍松动")
    stale_poll = RemoteRequest.from_doc(closed)  # a poll read before the reopening, applied after it
    assert desk.apply_remote(RemoteRequest.from_doc(Backend.request_doc(reopened))) is True
    assert desk.apply_remote(stale_poll) is False
    await settle(tapp)
    told = [s.text for s in channel.sent if s.text.startswith("工单 #1")]
    assert len(told) == 2 and "已重新打开" in told[1]


async def test_outbox_backs_off_parks_alerts_and_never_drops(
    data_dir: Path,
    tmp_path: Path,
    clock: ManualClock,
    channel: RecordingChannel,
    say: Say,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backend.testing import free_port

    port = free_port()
    monkeypatch.setenv("DOORSTEP_OPEN311_URL", f"http://127.0.0.1:{port}/open311/v2")
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEY", KEY)
    app = App(load_config(ROOT / "config" / "doorstep.yaml"), clock=clock, channels={"rec": channel})
    await app.start(background=False)
    try:
        desk = desk_of(app)
        await say_all(app, say("3号楼门口井盖松了"))
        assert "工单号 #1" in channel.sent[0].text  # acknowledged although the backend is down
        delays = []
        for _ in range(desk.outbox.max_attempts):
            await settle(app)
            with app.store.session() as s:
                row = s.scalars(select(TicketOutbox)).one()
            delays.append((row.next_attempt_at - clock.now()).total_seconds())
            clock.advance(max(0.0, delays[-1]) + 0.001)
        assert row.state == "parked" and row.attempts == desk.outbox.max_attempts
        base = desk.outbox.base_delay
        for i, delay in enumerate(delays[:-1]):  # backing off: doubling, within its ±50% jitter
            assert 0.5 * base * 2**i <= delay <= 1.5 * base * 2**i, delays
        assert delays[-1] == pytest.approx(
            desk.outbox.parked_retry_seconds, abs=0.01
        )  # parked: the slow retry
        alerts = [s for s in channel.sent if "工单发送失败" in s.text]
        assert {a.group for a in alerts} == {"s_wang"}  # the grid's staff, once
        await settle(app)
        assert len([s for s in channel.sent if "工单发送失败" in s.text]) == 1
        be = Backend(backend_settings(app.config, f"sqlite:///{tmp_path / 'late.db'}"), now=clock.now)
        with running_backend(be, port=port):
            clock.advance(desk.outbox.parked_retry_seconds + 1)
            await settle(app)
        assert len(requests_in(be)) == 1
        with app.store.session() as s:
            assert s.scalars(select(TicketOutbox)).one().state == "done"
        health = app.health()["parts"]["ticket_backend"]
        assert health["outbox"] == {"pending": 0, "parked": 0, "sent": 1}
        be.engine.dispose()
    finally:
        await app.stop()


async def test_a_retry_with_the_same_key_never_makes_a_second_ticket(backend) -> None:
    client = GeoReportClient(backend[1], KEY)
    try:
        a = await client.create(
            service_code="noise", description="装修太吵", address="3号楼", idempotency_key="k-1"
        )
        b = await client.create(
            service_code="noise", description="装修太吵", address="3号楼", idempotency_key="k-1"
        )
        c = await client.create(
            service_code="noise", description="装修太吵", address="3号楼", idempotency_key="k-2"
        )
    finally:
        await client.aclose()
    assert a == b and c.service_request_id != a.service_request_id
    assert len(requests_in(backend[0])) == 2


async def test_a_report_cut_off_by_a_crash_is_recovered(
    tapp: App, channel: RecordingChannel, clock: ManualClock
) -> None:
    with tapp.store.session() as s:  # the router recorded the message, then the process died
        s.add(
            InboundMessage(
                channel="rec",
                message_id="lost-1",
                group_id="幸福里3号楼",
                sender="u_zhang",
                sender_name="张师傅",
                text="3号楼门口井盖松了",
                received_at=clock.now(),
            )
        )
        s.add(
            InboundMessage(
                channel="rec",
                message_id="lost-2",
                group_id="幸福里3号楼",
                sender="u_zhang",
                sender_name="张师傅",
                text="哈哈哈",
                received_at=clock.now(),
            )
        )
    clock.advance(60)
    await settle(tapp)
    assert [s.text[:11] for s in channel.sent] == ["已收到，工单号 #1，"]
    await settle(tapp)
    assert len(channel.sent) == 1
    with tapp.store.session() as s:
        assert s.scalar(select(func.count()).select_from(TicketReport)) == 1


async def test_a_problem_given_in_answer_to_where_decides_the_ticket(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    """ "我想反映一下我们楼的情况", the bot asks where, "楼道灯不亮": the joined words are classified again, so the
    chat files what `doorstep classify 楼道灯不亮` says (物业维修), titled by the problem, not by the preamble."""
    await say_all(tapp, say("我想反映一下我们楼的情况"))
    [ask] = channel.texts()
    assert ask.startswith("请问具体位置在哪里？")
    await say_all(tapp, say("楼道灯不亮"))
    await settle(tapp)
    [req] = requests_in(backend[0])
    assert tapp.services.classifier.classify("楼道灯不亮").service_code == "property_repair"
    assert req.service_code == "property_repair"
    with tapp.store.session() as s:
        t = s.get(Ticket, 1)
        assert t is not None and t.title == "楼道 灯不亮"
        assert "楼道灯不亮" in t.description
    assert "【物业维修】" in channel.sent[-1].text
