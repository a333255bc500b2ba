"""The conversation, not the single message (issue 11): each case through the real pipeline (router, handlers,
desk, outbox) against the built-in backend on a loopback port, on the virtual clock, asserting on the tickets in
the backend and on what the group was told. The rules are in docs/conversation.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from backend import Backend
from backend.models import ServiceRequest
from bot.app import App
from bot.clock import ManualClock
from channels.simulator.channel import SimulatorChannel
from core.message import Location, Message, split_quote
from store.models import ConversationRow, Ticket, TicketMedia, TicketReport
from tests.conftest import ROOT, TICKETS_API_KEY
from tests.support import RecordingChannel, Say
from tickets import texts
from tickets.desk import ReportDesk
from tickets.followup import LATE_PLACE_SECONDS

JPEG = b"\xff\xd8\xff\xe0" + b"photo" * 50
GRID_WORKER = {
    "sender": "s_wang",
    "sender_name": "王网格员",
}  # 网格员 of 幸福里3号楼's grid (config/staff.yaml)


@pytest.fixture(autouse=True)
def open311_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEYS", TICKETS_API_KEY)


async def say_all(app: App, *msgs: Message) -> list:
    outcomes = [await app.handle(m) for m in msgs]
    await app.sender.drain()
    return outcomes


async def settle(app: App) -> None:
    """One heartbeat: the outbox delivers to the backend, owed messages are sent."""
    await app.tick()
    await app.sender.drain()


async def filed_without_place_long_ago(app: App, clock: ManualClock) -> None:
    """The wait for the place is over (filed without one), and so is the window for a late answer."""
    clock.advance(app.config.main.tickets.place_timeout_seconds + 1)
    await settle(app)
    clock.advance(LATE_PLACE_SECONDS + 1)
    await settle(app)
    with app.store.session() as s:
        assert s.scalars(select(ConversationRow)).all() == []


def desk_poll_seconds(app: App) -> float:
    assert isinstance(app.services.tickets, ReportDesk)
    return app.services.tickets.poll_interval_seconds


def requests_in(be: Backend) -> list[ServiceRequest]:
    with be.sessions() as s:
        return list(s.scalars(select(ServiceRequest).order_by(ServiceRequest.id)).all())


def tickets_in(app: App) -> list[Ticket]:
    with app.store.session() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)).all())


def reports_in(app: App) -> list[TicketReport]:
    with app.store.session() as s:
        return list(s.scalars(select(TicketReport).order_by(TicketReport.id)).all())


# --- 1. people talking to each other ------------------------------------------------------------------------


async def test_a_grid_workers_answer_to_a_resident_is_not_a_ticket(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    answer = "@小陈 南门外华联超市旁边的益丰大药房是24小时营业的"
    # the model alone reads it as a report about a shop: what happened in the live group
    assert tapp.services.classifier.classify(answer).needs_ticket
    [o] = await say_all(tapp, say(answer, **GRID_WORKER))
    await settle(tapp)
    assert o.status == "ignored" and o.reason == "staff talking"
    assert channel.sent == [] and reports_in(tapp) == [] and requests_in(backend[0]) == []
    # nor is a staff member's unaddressed word about a problem: they are telling residents, not the bot
    [o] = await say_all(tapp, say("3号楼门口井盖松了，我已经通知维修了，大家绕行", **GRID_WORKER))
    assert o.reason == "staff talking" and channel.sent == [] and reports_in(tapp) == []


@pytest.mark.parametrize(
    ("text", "mention"),
    [
        ("报修 5号楼东侧路灯不亮了", False),  # the trigger word, said to the bot
        ("/报修 6号楼门口井盖松了", False),  # the slash command
        ("登记一下：2号楼302刘奶奶想订助老餐，腿脚不方便", True),  # "@家门口助手 登记一下：…"
    ],
)
async def test_a_staff_member_filing_on_purpose_is_a_ticket(
    tapp: App, backend, channel: RecordingChannel, say: Say, text: str, mention: bool
) -> None:
    [o] = await say_all(tapp, say(text, mention=mention, **GRID_WORKER))
    await settle(tapp)
    assert o.handler == "report"
    [req] = requests_in(backend[0])
    assert "已收到，工单号 #1" in channel.sent[0].text and channel.sent[0].mentions == ("s_wang",)
    assert text.split(" ", 1)[-1].split("：", 1)[-1][:6] in req.description


async def test_staff_filing_is_a_ticket_whatever_the_model_thinks(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    words = "登记一下：明天上午9点2号楼张奶奶要上门量血压"
    assert not tapp.services.classifier.classify(words).needs_ticket  # the model: not a report
    [o] = await say_all(tapp, say(words, mention=True, **GRID_WORKER))
    await settle(tapp)
    assert o.handler == "report"
    [req] = requests_in(backend[0])
    assert "张奶奶" in req.description


async def test_people_talking_to_each_other_and_a_report_that_mentions_a_neighbour(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    """The rule for a resident's message that @-mentions someone other than the bot: a report is still filed when
    it names a problem (no report dropped by policy); anything else is the neighbours' conversation."""
    [info, question, report] = await say_all(
        tapp,
        say("@小陈 南门外华联超市旁边的益丰大药房是24小时营业的", sender="u_liu", sender_name="刘阿姨"),
        say("@刘阿姨 明天几点停水？", sender="u_chen", sender_name="小陈"),
        say("@刘阿姨 3号楼门口井盖松了，差点摔了，您出门小心", sender="u_chen", sender_name="小陈"),
    )
    await settle(tapp)
    assert (info.status, info.reason) == ("ignored", "talking to others")
    assert (question.status, question.reason) == ("ignored", "talking to others")  # not answered over them
    assert report.handler == "report"
    [req] = requests_in(backend[0])
    assert req.service_code == "municipal_facility" and "井盖" in req.description
    assert [s.text.split("，")[0] for s in channel.sent] == ["已收到"]
    # the same mention rendered by the platform (an id in `mentions`, not typed) counts alike
    [o] = await say_all(tapp, say("那家修鞋的搬到3号楼底商了", sender="u_liu", mentions=("u_chen",)))
    assert o.reason == "talking to others"


# --- 2. the answer to "where?" joins its report --------------------------------------------------------------


@pytest.mark.parametrize("answer", ["3号楼2单元5楼", "5楼", "就在我家楼下", "402"])
async def test_the_answer_to_where_is_the_place_of_that_report(
    tapp: App, backend, channel: RecordingChannel, say: Say, answer: str
) -> None:
    await say_all(tapp, say("电梯又坏了，爬楼累死了"))
    assert channel.texts() == [texts.ASK_PLACE]
    [o] = await say_all(tapp, say(answer))
    await settle(tapp)
    assert (o.reason, o.handler) == ("followup", "report")
    [req] = requests_in(backend[0])  # one ticket, not a second one for the answer
    assert answer in req.address and req.service_code == "property_repair"
    [t] = tickets_in(tapp)
    assert t.place == answer and t.description == "电梯又坏了，爬楼累死了"  # the place is not a problem
    assert len(channel.sent) == 2 and f"地点：{answer}" in channel.sent[1].text


async def test_an_answer_that_names_another_problem_is_a_report_of_its_own(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    await say_all(tapp, say("电梯又坏了，爬楼累死了"))
    [o] = await say_all(tapp, say("5号楼门口有人乱停车，堵死了"))
    await settle(tapp)
    assert o.handler == "report" and o.reason == ""  # routed as new, not taken as the elevator's place
    assert [r.service_code for r in requests_in(backend[0])] == ["property_repair", "parking_traffic"]
    first, second = tickets_in(tapp)
    assert first.place == "" and second.place == "5号楼门口"


async def test_the_problem_told_after_a_vague_first_message_joins_and_the_place_is_asked_again(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    await say_all(tapp, say("我想反映一下我们楼的情况"))
    [o] = await say_all(tapp, say("电梯坏了好几天了"))
    assert o.reason == "followup" and channel.texts()[-1] == texts.ASK_PLACE_AGAIN
    await say_all(tapp, say("6号楼1单元"))
    await settle(tapp)
    [req] = requests_in(backend[0])
    assert req.service_code == "property_repair" and "6号楼1单元" in req.address
    assert "电梯坏了好几天了" in req.description
    [t] = tickets_in(tapp)
    assert t.title.startswith("6号楼1单元") and "电梯" in t.title


async def test_a_late_answer_to_where_still_gives_the_ticket_its_place(
    tapp: App, backend, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    await say_all(tapp, say("电梯又坏了，爬楼累死了"))
    clock.advance(tapp.config.main.tickets.place_timeout_seconds + 1)
    await settle(tapp)  # the wait is over: filed without a place
    assert "已收到，工单号 #1" in channel.sent[-1].text and "地点" not in channel.sent[-1].text
    clock.advance(60)  # the resident answers three minutes after being asked
    [o] = await say_all(tapp, say("3号楼2单元5楼"))
    assert (o.reason, o.handler) == ("followup", "report")
    assert channel.sent[-1].text == "已补充到工单 #1（地点：3号楼2单元5楼）。"
    await settle(tapp)
    [req] = requests_in(backend[0])  # still in the outbox when the place came: the backend has it
    assert "3号楼2单元5楼" in req.address
    [t] = tickets_in(tapp)
    assert t.place == "3号楼2单元5楼" and t.place_key


async def test_a_late_answer_is_recorded_on_a_delivered_ticket_and_its_window_closes(
    tapp: App, backend, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    await say_all(tapp, say("电梯又坏了，爬楼累死了"))
    clock.advance(tapp.config.main.tickets.place_timeout_seconds + 1)
    await settle(tapp)
    await settle(tapp)  # delivered to the backend, which has no call to change it (GeoReport v2)
    [req] = requests_in(backend[0])
    await say_all(tapp, say("3号楼2单元5楼"))
    [t] = tickets_in(tapp)
    assert t.place == "3号楼2单元5楼" and t.remote_id == str(req.id)  # recorded locally
    assert "3号楼2单元5楼" not in requests_in(backend[0])[0].address

    # the window for a late answer closes: the next report is a new one, the old one is left alone
    await say_all(tapp, say("电梯门关不上了", sender="u_liu", sender_name="刘阿姨"))
    await filed_without_place_long_ago(tapp, clock)
    [o] = await say_all(tapp, say("5号楼东门口", sender="u_liu", sender_name="刘阿姨"))
    assert o.reason != "followup"
    assert tickets_in(tapp)[1].place == ""


# --- 3. a quoted reply adds to its ticket ------------------------------------------------------------------


async def _reported(app: App, channel: RecordingChannel, say: Say, text: str) -> str:
    await say_all(app, say(text))
    ack = channel.sent[-1].text
    assert ack.startswith("已收到，工单号 #1")
    return ack


async def test_a_quoted_supplement_adds_to_the_ticket_and_says_so(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    ack = await _reported(tapp, channel, say, "3号楼门口井盖松了，差点摔了")
    # WeChat quotes what it showed: the bot's @mention of the reporter, then the text
    [o] = await say_all(
        tapp, say("补充一下：井盖旁边的路面也裂了一条缝", quoted=f"@张师傅\u2005{ack}", image=JPEG)
    )
    assert o.handler == "report"
    assert channel.sent[-1].text == "已补充到工单 #1（补充说明、1张照片）。"
    await settle(tapp)
    [req] = requests_in(backend[0])  # no second ticket titled "「家门口助手：已收到"
    assert "井盖旁边的路面也裂了一条缝" in req.description  # still in the outbox: it went out with the ticket
    [t] = tickets_in(tapp)
    assert t.title.startswith("3号楼门口") and "补充（张师傅）：井盖旁边的路面也裂了一条缝" in t.description
    first, added = reports_in(tapp)
    assert (added.state, added.ticket_id) == ("supplement", 1)
    with tapp.store.session() as s:
        assert (
            s.scalar(select(func.count()).select_from(TicketMedia).where(TicketMedia.report_id == added.id))
            == 1
        )

    # after delivery: recorded locally (the backend's request keeps what it was sent)
    await say_all(tapp, say("还有旁边的路灯也是暗的", quoted=f"家门口助手：{ack}", sender="u_liu"))
    assert channel.sent[-1].text == "已补充到工单 #1（补充说明）。"
    assert "路灯也是暗的" in tickets_in(tapp)[0].description
    assert "路灯也是暗的" not in requests_in(backend[0])[0].description and len(requests_in(backend[0])) == 1


async def test_a_quoted_location_gives_the_ticket_its_place_and_photos_follow(
    tapp: App, backend, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    await say_all(tapp, say("电梯又坏了，爬楼累死了"))
    await filed_without_place_long_ago(tapp, clock)
    ack = channel.sent[-1].text
    here = Location(39.16, 117.21, "幸福里3号楼2单元")
    [o] = await say_all(tapp, say("", quoted=ack, location=here))
    assert channel.sent[-1].text == "已补充到工单 #1（地点：幸福里3号楼2单元）。"
    [o] = await say_all(tapp, say("", image=JPEG))  # a photo in the next minute joins it too
    assert o.reason == "followup"
    [t] = tickets_in(tapp)
    assert (t.place, t.lat, t.lon) == ("幸福里3号楼2单元", 39.16, 117.21)
    with tapp.store.session() as s:
        assert s.scalar(select(func.count()).select_from(TicketMedia)) == 1


async def test_a_quote_of_where_answers_it_after_the_wait(
    tapp: App, backend, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    await say_all(tapp, say("电梯又坏了，爬楼累死了"))
    await filed_without_place_long_ago(tapp, clock)
    # as the simulator and some puppets deliver it: the quote typed before the reply
    reply, quoted = split_quote(f"「家门口助手：{texts.ASK_PLACE}」\n3号楼2单元5楼")
    await say_all(tapp, say(reply, quoted=quoted))
    assert channel.sent[-1].text == "已补充到工单 #1（地点：3号楼2单元5楼）。"
    assert len(tickets_in(tapp)) == 1 and tickets_in(tapp)[0].place == "3号楼2单元5楼"


async def test_a_quoted_danger_makes_the_ticket_urgent_and_alerts_the_grid(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    ack = await _reported(tapp, channel, say, "5号楼2单元电梯又坏了，停在3楼")
    [t] = tickets_in(tapp)
    assert t.urgency == "normal"
    await say_all(tapp, say("补充：里面还有人被困着，一直在喊", quoted=ack))
    assert channel.sent[-1].text.startswith("已补充到工单 #1（补充说明）。\n情况紧急")
    [t] = tickets_in(tapp)
    assert t.urgency == "urgent"
    await settle(tapp)
    alerts = [s for s in channel.sent if s.group == "s_wang"]  # the grid's 网格员, in a private chat
    assert alerts and alerts[0].text.startswith("【紧急工单 #1】")


async def test_a_quote_of_the_closed_notice_adds_and_says_how_to_report_again(
    tapp: App, backend, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    await _reported(tapp, channel, say, "3号楼门口井盖松了，差点摔了")
    await settle(tapp)
    backend[0].update_status(1, "closed", "已更换井盖", "街道城管科")  # staff close it in the backend
    clock.advance(desk_poll_seconds(tapp) + 1)
    await settle(tapp)
    closed = channel.sent[-1].text
    assert closed.startswith("工单 #1（3号楼门口 井盖松了）已处理完毕")
    await say_all(tapp, say("还是松的，踩上去晃", quoted=closed, sender="u_liu", sender_name="刘阿姨"))
    assert channel.sent[-1].text == "已补充到工单 #1（补充说明）。" + texts.SUPPLEMENTED_CLOSED
    assert channel.sent[-1].mentions == ("u_liu",)
    assert "补充（刘阿姨）：还是松的，踩上去晃" in tickets_in(tapp)[0].description


async def test_a_quote_adds_only_to_a_ticket_the_group_was_told_of(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    ack = await _reported(tapp, channel, say, "3号楼门口井盖松了，差点摔了")
    # in another group, or a made-up quote of a number: not a supplement (nothing added to ticket #1)
    [elsewhere] = await say_all(tapp, say("补充一下：井盖旁边还有个坑", quoted=ack, group="幸福里5号楼"))
    [made_up] = await say_all(
        tapp, say("补充一下：路面也裂了", quoted="已收到，工单号 #7，已转交【物业维修】")
    )
    assert elsewhere.reason != "followup" and "已补充" not in " ".join(channel.texts())
    assert made_up.reason != "followup"
    assert "坑" not in tickets_in(tapp)[0].description and "裂了" not in tickets_in(tapp)[0].description
    assert not any(r.state == "supplement" for r in reports_in(tapp))


async def test_the_simulator_carries_a_quote_typed_or_sent_beside_the_words() -> None:
    got: list[Message] = []

    async def inbox(m: Message) -> None:
        got.append(m)

    sim = SimulatorChannel("doorstep-bot")
    await sim.start(inbox)
    await sim.post(
        "幸福里3号楼",
        "u_zhang",
        "张师傅",
        "「家门口助手：已收到，工单号 #3，已转交【物业维修】」 补充一下：二楼也不亮",
    )
    await sim.post("幸福里3号楼", "u_zhang", "张师傅", "补充一下：三楼也不亮", quoted="已收到，工单号 #3")
    assert [(m.text, m.quoted) for m in got] == [
        ("补充一下：二楼也不亮", "已收到，工单号 #3，已转交【物业维修】"),
        ("补充一下：三楼也不亮", "已收到，工单号 #3"),
    ]
    assert sim.messages("幸福里3号楼")[0]["quoted"] == "已收到，工单号 #3，已转交【物业维修】"


# --- 4. thanks and chitchat --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("谢谢你啊", "不客气，有需要随时找我。"),
        ("好的，谢谢！", "不客气，有需要随时找我。"),
        ("辛苦了", "不客气，有需要随时找我。"),
        ("你好", "您好，我在。"),
        ("给我唱首歌", "这个我还不太会"),
    ],
)
async def test_thanks_and_chitchat_said_to_the_bot_get_a_friendly_reply(
    tapp: App, backend, channel: RecordingChannel, say: Say, text: str, reply: str
) -> None:
    [o] = await say_all(tapp, say(f"@家门口助手 {text}"))
    assert o.handler == "smalltalk"
    [sent] = channel.sent
    assert sent.text.startswith(reply) and "帮不上忙" not in sent.text
    assert reports_in(tapp) == []


async def test_thanks_between_neighbours_and_quoting_the_bot(
    tapp: App, backend, channel: RecordingChannel, say: Say
) -> None:
    ack = await _reported(tapp, channel, say, "3号楼门口井盖松了，差点摔了")
    [o] = await say_all(tapp, say("谢谢刘阿姨提醒", sender="u_chen"))  # not said to the bot
    assert o.status == "ignored" and len(channel.sent) == 1
    [o] = await say_all(tapp, say("谢谢", quoted=ack))  # a quoted reply to the bot is said to it
    assert o.handler == "smalltalk" and channel.sent[-1].text == "不客气，有需要随时找我。"
    assert [r.state for r in reports_in(tapp)] == ["filed"]  # thanks are not a supplement


# --- 5. 帮助 without an @ ----------------------------------------------------------------------------------


async def test_help_works_unaddressed_once_in_the_window(
    tapp: App, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    window = tapp.config.policy_for("幸福里3号楼").repeat_window_minutes * 60
    [first] = await say_all(tapp, say("帮助"))
    assert first.handler == "help" and channel.sent[0].text.startswith("我是家门口助手")
    clock.advance(30)
    [again] = await say_all(tapp, say("help", sender="u_liu"))  # a busy group: the list is on screen already
    assert again.status == "ignored" and len(channel.sent) == 1
    [asked] = await say_all(
        tapp, say("帮助", mention=True, sender="u_chen")
    )  # asked of the bot: always answered
    assert asked.handler == "help" and len(channel.sent) == 2
    clock.advance(window)
    [later] = await say_all(tapp, say("帮助", sender="u_liu"))
    assert later.handler == "help" and len(channel.sent) == 3


async def test_help_unaddressed_waits_for_the_morning(
    tapp: App, channel: RecordingChannel, clock: ManualClock, say: Say
) -> None:
    night = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai: quiet hours
    clock.advance((night - clock.now()).total_seconds())
    [o] = await say_all(tapp, say("帮助"))
    assert o.status == "ignored" and channel.sent == []
    [o] = await say_all(tapp, say("帮助", mention=True, sender="u_liu"))
    assert o.handler == "help" and len(channel.sent) == 1


# --- 6. one classifier in the chat and in `doorstep classify` ---------------------------------------------


MESSAGES = [
    "3号楼门口井盖松了，差点摔了",
    "5号楼2单元楼道灯不亮好几天了",
    "12号楼电梯又停在半层不动了，里面好像有人！！",
    "车棚那里有根电线破皮露铜了",
    "2号楼下垃圾桶满了好几天没人清",
    "小区东门有人乱停车，把消防通道堵了",
    "4号楼楼上装修从早上七点吵到晚上",
    "7号楼楼上卫生间漏水漏到我家天花板了",
    "路口那个下水道箅子被人偷了，一个大窟窿",
    "8号楼有人在楼道里给电动车飞线充电",
]


async def test_the_chat_files_what_doorstep_classify_says(
    tapp: App, backend, data_dir, clock: ManualClock, say: Say
) -> None:
    for i, text in enumerate(MESSAGES):  # one reporter each, so no two reports are one conversation
        await say_all(tapp, say(text, sender=f"u_{i}", sender_name=f"居民{i}"))
    clock.advance(tapp.config.main.tickets.place_timeout_seconds + 1)  # those without a place are filed too
    await settle(tapp)
    await settle(tapp)
    filed = {r.first_name: r for r in requests_in(backend[0])}
    env = {**os.environ, "DOORSTEP_DATA": str(data_dir), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "classify", "--json"],
        input="\n".join(MESSAGES) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    said = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(said) == len(MESSAGES) and all(s["needs_ticket"] for s in said)
    chat = [
        (filed[f"居民{i}"].service_code, filed[f"居民{i}"].attributes["urgency"])
        for i in range(len(MESSAGES))
    ]
    assert chat == [(s["service_code"], s["urgency"]) for s in said]
    assert len({code for code, _ in chat}) >= 6 and {u for _, u in chat} == {
        "normal",
        "urgent",
    }  # a real spread
