"""帮助: what the bot can do, in plain Chinese."""

from __future__ import annotations

from bot.message import Reply
from handlers.base import Context, Handler, Rule, command, register

HELP = """我是{name}，社区的小助手，可以帮您：
1. 问政策和服务：直接问，如“助老食堂几点开饭”“电瓶车能推上楼充电吗”，我会附上出处；
2. 反映问题：说清楚什么问题、在哪里，可以带照片或位置，如“3号楼门口井盖松了”，我会登记工单并告诉您工单号，处理好了会在群里通知；
3. 查工单：发“查询工单 #123”或“我的工单”。
在群里@我或以“{trigger}”开头说话我就会回复。工作人员可发 /通知 发布群通知。"""


def _is_help(c: Context) -> bool:
    t = c.text.strip().lstrip("/／")
    return t in ("帮助", "help", "菜单", "你能做什么", "你会什么", "功能") or (c.addressed and t == "")


@register
class HelpHandler(Handler):
    name = "help"
    priority = 10
    rule = Rule(_is_help, "help") | command("帮助", "help")

    async def handle(self, ctx: Context) -> list[Reply]:
        bot = ctx.services.config.main.bot
        trigger = (ctx.policy.triggers or [bot.name])[0]
        return [ctx.reply(HELP.format(name=bot.name, trigger=trigger), kind="answer")]
