"""Questions: the staff FAQ, then the knowledge index, answered with the source; or an honest "not found",
recorded as a knowledge gap, with an offer to pass the question to staff (转人工).

A reply such as "转人工", "需要" or "好的" within a few minutes tells the group's grid worker (or, failing that,
the community's staff) in the same group, @mentioning them with the question and who asked."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from core.community import StaffMember
from core.conversation import Conversation
from core.handler import Context, Handler, intent_is
from core.message import Reply
from core.registry import register
from pii import mask_pii

log = logging.getLogger(__name__)

OFFER_MINUTES = 10
OFFERED = "offered"  # the one state of the conversation: "not found, pass it to staff?" was asked
UNAVAILABLE = "抱歉，政策和服务资料暂时查不了，请稍后再问，或直接联系网格员。"
# The channel renders the Reply's mentions (staff, then the asker) as "@name" before the text, as WeChat does,
# so the text names nobody with "@": it reads on after that prefix.
FORWARDED = "已转人工：请帮忙解答{asker}的问题“{question}”（资料里没有找到答案）。"
NO_STAFF = "好的，您的问题已记录，社区工作人员看到后会尽快在群里答复您。"
DECLINED = "好的，有需要随时再问我。"

_ACCEPT = {
    "转人工",
    "人工",
    "需要",
    "要",
    "好",
    "好的",
    "好啊",
    "好呀",
    "可以",
    "行",
    "是",
    "是的",
    "嗯",
    "嗯嗯",
    "对",
    "麻烦了",
    "麻烦你了",
    "麻烦您了",
    "谢谢",
    "转",
    "转吧",
    "帮我转",
    "请转人工",
    "需要人工",
    "找人工",
    "ok",
}
_DECLINE = {"不用", "不用了", "不需要", "算了", "没事", "没事了", "不要", "不了", "no"}
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


def _norm(text: str) -> str:
    return _PUNCT.sub("", text).lower()


def accepts(text: str) -> bool:
    t = _norm(text)
    return t in _ACCEPT or "转人工" in t or (len(t) <= 8 and "人工" in t)


def declines(text: str) -> bool:
    return _norm(text) in _DECLINE


def staff_for(staff: list[StaffMember], community: str, grid: str) -> list[StaffMember]:
    """Who answers for a group: its grid's 网格员, else the community's 社区工作者 and 管理员, else any 管理员."""
    if community:
        grid_workers = [
            s for s in staff if s.community == community and grid and grid in s.grids and "网格员" in s.roles
        ]
        if grid_workers:
            return grid_workers
        workers = [s for s in staff if s.community == community and {"社区工作者", "管理员"} & set(s.roles)]
        if workers:
            return workers
    return [s for s in staff if "管理员" in s.roles][:1]


@register
class AskHandler(Handler):
    name = "ask"
    priority = 60
    rule = intent_is("question")
    usage = "问政策和服务：直接问，如“助老食堂几点开饭”“电瓶车能推上楼充电吗”，我会附上出处"
    usage_rank = 1

    async def handle(self, ctx: Context) -> list[Reply]:
        knowledge = self.services.knowledge
        question = ctx.text.strip()
        preparing = knowledge.preparing()  # `serve` still opening the index: say how far
        if preparing is not None:
            return [ctx.reply(preparing, kind="status")]
        msg = ctx.message
        # a private chat has a community too when the config gives one (a 微信客服 account's conversations)
        group = self.services.groups.resolve(msg.group)
        community = group.community if group else ""
        answer = await knowledge.ask(question, community or None)
        if answer is None:  # not loaded, or the index cannot be read just now (logged where it failed)
            return [ctx.reply(UNAVAILABLE, kind="error")]
        if answer.found:
            ctx.answered = True
            return [ctx.reply(answer.text, kind="answer")]
        now = self.services.clock.now()
        gap_id = self.services.gaps.record(
            group=msg.group,
            community=community,
            sender=msg.sender,
            sender_name=msg.display_sender,
            question=question,
            now=now,
        )
        if not msg.private:
            self.services.conversations.open(
                self.name,
                msg.group,
                msg.sender,
                state=OFFERED,
                deadline=now + timedelta(minutes=OFFER_MINUTES),
                data={
                    "gap_id": gap_id,
                    "question": question,
                    "community": community,
                    "grid": group.grid if group else "",
                },
            )
        return [ctx.reply(answer.text, kind="refusal")]

    async def followup(self, ctx: Context, conv: Conversation) -> list[Reply] | None:
        msg = ctx.message
        convs = self.services.conversations
        if declines(ctx.text):
            convs.close(msg.group, msg.sender)
            return [ctx.reply(DECLINED, kind="ack")]
        if not accepts(ctx.text):
            convs.close(msg.group, msg.sender)  # something else: a new message, and the offer lapses
            return None
        convs.close(msg.group, msg.sender)
        question = conv.get_str("question")
        people = staff_for(
            list(self.services.config.staff_list), conv.get_str("community"), conv.get_str("grid")
        )
        gap_id = conv.get_int("gap_id")
        if not people:
            return [ctx.reply(NO_STAFF, kind="ack")]
        if gap_id is not None:
            self.services.gaps.forwarded(gap_id, ",".join(s.id for s in people), self.services.clock.now())
        text = FORWARDED.format(asker=msg.display_sender, question=mask_pii(question)[:200])
        log.info("question from %s in %s passed to %s", msg.sender, msg.group, [s.id for s in people])
        return [
            Reply(
                group=msg.group,
                text=text,
                mentions=(*(s.id for s in people), msg.sender),
                in_reply_to=msg.id,
                channel=msg.channel,
                kind="answer",
            )
        ]
