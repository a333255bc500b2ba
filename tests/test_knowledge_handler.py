"""The question handler in the real pipeline: answers with a source line, honest "not found" recorded as a
knowledge gap, and 转人工 telling the group's grid worker in the same group. A scripted answerer stands in
for the index so the tests are about the conversation, not retrieval."""

from __future__ import annotations

from bot.app import App
from bot.router import Outcome
from core.message import Message
from handlers.ask import accepts, declines, staff_for
from knowledge.gaps import list_gaps
from knowledge.service import NOT_FOUND
from knowledge.types import Answer, Citation
from tests.support import RecordingChannel, Say


class ScriptedAnswerer:
    """Knows the canteen's hours in 示例社区 only; everything else is not found."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def answer(self, question: str, community: str | None = None) -> Answer:
        self.asked.append((question, community))
        if "食堂" in question and community == "示例社区":
            c = Citation(
                "示例社区服务目录.csv", "示例社区服务目录", "助老食堂", "助老食堂 午餐11:00-13:00", 0.93
            )
            return Answer(question, True, f"助老食堂：午餐11:00-13:00\n{c.line()}", [c])
        return Answer(question, False, NOT_FOUND, [])


async def run(app: App, *msgs: Message) -> list[Outcome]:
    outcomes = [await app.handle(m) for m in msgs]
    await app.sender.drain()
    return outcomes


def with_knowledge(app: App) -> ScriptedAnswerer:
    kb = ScriptedAnswerer()
    app.knowledge.service = kb
    return kb


async def test_found_answer_has_a_source_line_and_uses_the_group_community(
    app: App, channel: RecordingChannel, say: Say
) -> None:
    kb = with_knowledge(app)
    [o] = await run(app, say("助老食堂几点开饭？", mention=True))
    assert o.handler == "ask"
    assert kb.asked == [("助老食堂几点开饭？", "示例社区")]  # 幸福里3号楼 belongs to 示例社区
    (sent,) = channel.sent
    assert "11:00-13:00" in sent.text and "来源：《示例社区服务目录》助老食堂" in sent.text
    assert sent.mentions == ("u_zhang",)
    # answered: the same question again within minutes gets a pointer, not a second copy
    [again] = await run(app, say("助老食堂几点开饭", mention=True, sender="u_li", sender_name="李阿姨"))
    assert again.reason == "repeated question"


async def test_other_community_gets_its_own_knowledge(app: App, channel: RecordingChannel, say: Say) -> None:
    kb = with_knowledge(app)
    await run(app, say("助老食堂几点开饭？", mention=True, group="焕玉里2号院"))
    assert kb.asked[-1][1] == "焕玉里社区"
    assert NOT_FOUND in channel.sent[-1].text


async def test_not_found_is_recorded_and_forwarded_to_the_grid_worker(
    app: App, channel: RecordingChannel, say: Say
) -> None:
    with_knowledge(app)
    [o] = await run(app, say("小区游泳池几点开放？", mention=True))
    assert o.handler == "ask"
    assert "没有找到" in channel.sent[-1].text and "转人工" in channel.sent[-1].text
    (gap,) = list_gaps(app.store)
    assert gap["group"] == "幸福里3号楼" and gap["sender"] == "u_zhang" and gap["sender_name"] == "张师傅"
    assert (
        gap["question"] == "小区游泳池几点开放？"
        and gap["community"] == "示例社区"
        and gap["status"] == "open"
    )
    assert gap["asked_at"].startswith("2026-11-23T02:00")  # the app's clock

    [f] = await run(app, say("转人工"))
    assert f.reason == "followup" and f.handler == "ask"
    sent = channel.sent[-1]
    assert sent.group == "幸福里3号楼"
    assert "s_wang" in sent.mentions and "u_zhang" in sent.mentions  # 网格3's grid worker, and who asked
    assert sent.mentions == ("s_wang", "u_zhang")  # the channel renders them as @names before the text
    assert sent.text == "已转人工：请帮忙解答张师傅的问题“小区游泳池几点开放？”（资料里没有找到答案）。"
    assert "@" not in sent.text
    (gap,) = list_gaps(app.store)
    assert gap["status"] == "forwarded" and gap["forwarded_to"] == "s_wang"
    # the offer is used up: a second 转人工 is a new message
    [again] = await run(app, say("好的"))
    assert again.handler != "ask" or again.reason != "followup"


async def test_community_staff_when_the_grid_has_no_worker(
    app: App, channel: RecordingChannel, say: Say
) -> None:
    with_knowledge(app)
    await run(
        app, say("院里能装充电桩吗？", mention=True, group="焕玉里2号院"), say("需要", group="焕玉里2号院")
    )
    assert "s_sun" in channel.sent[-1].mentions and "@" not in channel.sent[-1].text


async def test_declining_or_changing_the_subject_ends_the_offer(
    app: App, channel: RecordingChannel, say: Say
) -> None:
    with_knowledge(app)
    await run(app, say("小区游泳池几点开放？", mention=True), say("不用了"))
    assert "有需要随时再问我" in channel.sent[-1].text
    assert list_gaps(app.store)[0]["status"] == "open"
    await run(app, say("小区健身房几点开？", mention=True))
    [o] = await run(app, say("助老食堂几点开饭？", mention=True))
    assert o.handler == "ask" and o.reason != "followup"  # a new question, not an answer to the offer
    assert "11:00-13:00" in channel.sent[-1].text


async def test_without_knowledge_the_bot_says_so(app: App, channel: RecordingChannel, say: Say) -> None:
    app.knowledge.service = None
    await run(app, say("助老食堂几点开饭？", mention=True))
    assert "暂时查不了" in channel.sent[-1].text


def test_acceptance_words() -> None:
    assert all(accepts(t) for t in ("转人工", "需要", "好的", "好的！", "麻烦转人工一下", "嗯嗯", "人工"))
    assert not any(accepts(t) for t in ("不用", "电梯坏了", "助老食堂在哪"))
    assert declines("不用了。") and not declines("好的")


def test_staff_for_prefers_the_grid_worker(config) -> None:  # type: ignore[no-untyped-def]
    staff = config.staff.staff
    assert [s.id for s in staff_for(staff, "示例社区", "网格3")] == ["s_wang"]
    assert [s.id for s in staff_for(staff, "示例社区", "网格1")] == ["s_zhao"]
    assert [s.id for s in staff_for(staff, "示例社区", "")] == ["s_li"]
    assert [s.id for s in staff_for(staff, "", "")] == ["s_li"]  # an unbound group: an administrator
