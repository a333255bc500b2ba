"""/通知: staff broadcast a notice to the right groups, after a preview they confirm.

    /通知 网格3 明天9点到12点停水，请提前储水          -> preview, then 确认 / 取消
    /通知 示例社区、楼栋群 明天8:00 周六上午义诊，收到请回复1
    /通知 全部 每周一 8:00 本周垃圾分类督导安排……
    /通知 状态 [编号]   /通知 取消 编号   /通知 重发 编号   /通知 列表

Targets are group names, grids, communities, tags or 全部, within the sender's scope (bot/groups.py). The
notice service (bot/notices.py) stores and delivers it; this module only talks with the staff member.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from core.community import ROLES
from core.conversation import Conversation
from core.errors import NoticeError
from core.handler import Context, Handler, Permission, Rule
from core.message import Reply
from core.ports import Notices
from core.registry import register

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 300
CONFIRMING = "confirming"  # the one state: the preview was shown, 确认 or 取消 awaited
_COMMAND = re.compile(r"^[/／]\s*(?:发通知|群通知|通知)|^(?:通知|发通知)(?=[\s:：])")
CONFIRM_WORDS = {"确认", "确定", "确认发送", "发送", "是", "对", "ok", "yes", "y"}
CANCEL_WORDS = {"取消", "不发", "不发了", "算了", "放弃", "不", "否", "no", "n"}

USAGE = """发通知的格式：/通知 发送对象 [时间] 内容
· 发送对象：群名、网格（网格3）、社区（示例社区）、标签（楼栋群）或“全部”，多个用“、”隔开；
· 时间（可不写，不写就确认后立即发）：明天8:00、11月25日 9:00，或重复发送：每天8:00、工作日7:30、每周一 8:00；
· 内容里写“收到请回复1”，我会统计各群回复“1”的人数。
例如：/通知 网格3 明天9点到12点停水，请提前储水
其他：/通知 状态 [编号]、/通知 取消 编号、/通知 重发 编号、/通知 列表"""
CONFIRM_PROMPT = "请回复“确认”发送通知，或回复“取消”放弃。"
EXPIRED = "通知预览已超过{minutes}分钟没有确认，这条通知没有发送。需要的话请重新发“/通知 …”。"
CANCELLED_DRAFT = "好的，已取消，这条通知没有发送。"
SENT_NOW = "已确认，通知#{id}正在发送给{n}个群（按微信发送频率逐个发出）。发“/通知 状态 {id}”查看送达情况。"
SENT_LATER = (
    "已确认，通知#{id}将在{when}发送给{n}个群。发“/通知 取消 {id}”可以取消，发“/通知 状态 {id}”查看。"
)


def _is_notice(c: Context) -> bool:
    t = c.text.strip()
    if t.startswith(("/", "／")):
        return bool(_COMMAND.match(t))
    return c.staff is not None and bool(_COMMAND.match(t))  # the bare form only for staff: "通知 …"


def _rest(text: str) -> str:
    m = _COMMAND.match(text.strip())
    return text.strip()[m.end() :].strip(" :：\u3000") if m else text.strip()


def _number(words: list[str]) -> int | None:
    for w in words:
        m = re.fullmatch(r"[#＃]?(\d{1,9})号?", w)
        if m:
            return int(m.group(1))
    return None


def _word(text: str) -> str:
    return re.sub(r"[\s。！!，,.]+", "", text).lower()


@register
class NoticeHandler(Handler):
    name = "notice"
    priority = 20
    rule = Rule(_is_notice, "/通知")
    permission = Permission(*ROLES)

    def _service(self) -> Notices:
        return self.services.notices

    async def handle(self, ctx: Context) -> list[Reply]:
        assert ctx.staff is not None  # the permission holds
        svc = self._service()
        rest = _rest(ctx.text)
        words = rest.split()
        sub = words[0] if words else ""
        if sub in ("", "帮助", "help", "格式", "用法"):
            return [ctx.reply(USAGE, kind="status")]
        if sub in ("状态", "查看", "回执", "送达", "进度"):
            return [ctx.reply(self._status(svc, ctx, _number(words[1:])), kind="status")]
        if sub in ("列表", "记录", "最近"):
            return [ctx.reply(self._list(svc, ctx), kind="status")]
        if sub in ("取消", "撤回", "重发"):
            return [ctx.reply(self._change(svc, ctx, sub, _number(words[1:])), kind="status")]
        try:
            draft = svc.draft_from_command(rest, ctx.staff)
        except NoticeError as e:
            return [ctx.reply(f"{e}\n发“/通知 帮助”查看格式。", kind="refusal")]
        m = ctx.message
        ctx.services.conversations.open(
            self.name,
            m.group,
            m.sender,
            state=CONFIRMING,
            deadline=ctx.services.clock.now() + timedelta(seconds=CONFIRM_TIMEOUT_SECONDS),
            data={
                "draft": svc.hold(draft),
                "group": m.group,
                "channel": m.channel,
                "sender": m.sender,
                "private": m.private,
            },
        )
        log.info("notice preview for %s: %s -> %d groups", m.sender, draft.targets, draft.group_count)
        return [ctx.reply(draft.preview(CONFIRM_TIMEOUT_SECONDS // 60), kind="status")]

    async def followup(self, ctx: Context, conv: Conversation) -> list[Reply] | None:
        word = _word(ctx.text)
        convs = ctx.services.conversations
        m = ctx.message
        if word in CANCEL_WORDS:
            convs.close(m.group, m.sender)
            return [ctx.reply(CANCELLED_DRAFT, kind="status")]
        if word not in CONFIRM_WORDS:
            if ctx.text.strip().startswith(("/", "／")):
                convs.close(m.group, m.sender)  # a new command replaces the unconfirmed notice
                return None
            return [ctx.reply(CONFIRM_PROMPT, kind="status")] if m.private or ctx.addressed else None
        convs.close(m.group, m.sender)
        svc = self._service()
        held = conv.data.get("draft")
        if not isinstance(held, dict):
            return [ctx.reply(CANCELLED_DRAFT, kind="status")]
        draft = svc.restore(held)
        staff = ctx.staff
        notice_id = svc.create(
            draft,
            created_by=m.sender,
            created_by_name=staff.name if staff else m.display_sender,
            source="chat",
            origin_channel=m.channel,
            origin_group=m.group,
        )
        if draft.immediate:
            svc.kick()
            text = SENT_NOW.format(id=notice_id, n=draft.group_count)
        else:
            text = SENT_LATER.format(id=notice_id, n=draft.group_count, when=draft.when)
        return [ctx.reply(text, kind="status")]

    async def expire(self, conv: Conversation) -> list[Reply]:
        group, channel, sender = conv.get_str("group"), conv.get_str("channel"), conv.get_str("sender")
        if not group or not channel:
            return []
        mentions = () if conv.data.get("private") or not sender else (sender,)
        return [
            Reply(
                group=group,
                text=EXPIRED.format(minutes=CONFIRM_TIMEOUT_SECONDS // 60),
                mentions=mentions,
                channel=channel,
                kind="status",
            )
        ]

    # --- reports and changes

    def _status(self, svc: Notices, ctx: Context, number: int | None) -> str:
        if number is None:
            mine = svc.recent(1, created_by=ctx.message.sender)
            if not mine:
                return "您还没有发过通知。发“/通知 帮助”查看怎么发。"
            report = mine[0]
        else:
            found = svc.report(number)
            if found is None:
                return f"没有找到通知#{number}。"
            report = found
        return report.summary(svc.tz)

    def _list(self, svc: Notices, ctx: Context) -> str:
        staff = ctx.staff
        everyone = staff is not None and "管理员" in staff.roles
        items = svc.recent(10, created_by="" if everyone else ctx.message.sender)
        if not items:
            return "还没有通知记录。"
        lines = ["最近的通知："]
        for r in items:
            c = r.counts
            lines.append(
                f"#{r.id} {'、'.join(r.targets)}｜{r.schedule}｜{r.text[:20]}{'…' if len(r.text) > 20 else ''}"
                f"｜已送达{c['sent']}/{sum(c.values()) or r.group_count}"
            )
        return "\n".join(lines)

    def _change(self, svc: Notices, ctx: Context, sub: str, number: int | None) -> str:
        if number is None:
            return f"请写明通知编号，如“/通知 {sub} 12”。发“/通知 列表”查看编号。"
        report = svc.report(number)
        if report is None:
            return f"没有找到通知#{number}。"
        staff = ctx.staff
        if report.created_by != ctx.message.sender and not (staff and "管理员" in staff.roles):
            return f"通知#{number}不是您发的，只有发送人或管理员可以{sub}。"
        try:
            if sub == "重发":
                n = svc.resend(number)
                if n:
                    svc.kick()
                return (
                    f"已把通知#{number}中发送失败或状态不明的{n}个群重新排队。"
                    if n
                    else f"通知#{number}没有需要重发的群。"
                )
            done = svc.cancel(number)
        except NoticeError as e:
            return str(e)
        c = done.counts
        return f"已取消通知#{number}。" + (f"已经送达的{c['sent']}个群无法撤回。" if c["sent"] else "")
