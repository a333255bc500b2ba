"""帮助: what the bot can do, in plain Chinese, built from every handler's `usage`."""

from __future__ import annotations

from core.handler import Context, Handler, Rule, command
from core.message import Reply
from core.registry import register

HEAD = "我是{name}，社区的小助手，可以帮您："
FOOT = "在群里@我或以“{trigger}”开头说话我就会回复。工作人员可发 /通知 发布群通知。"


def _is_help(c: Context) -> bool:
    t = c.text.strip().lstrip("/／")
    return t in ("帮助", "help", "菜单", "你能做什么", "你会什么", "功能") or (c.addressed and t == "")


def help_text(name: str, trigger: str, usages: tuple[str, ...]) -> str:
    items = [f"{i}. {u}{'。' if i == len(usages) else '；'}" for i, u in enumerate(usages, 1)]
    return "\n".join([HEAD.format(name=name), *items, FOOT.format(trigger=trigger)])


@register
class HelpHandler(Handler):
    name = "help"
    priority = 10
    rule = Rule(_is_help, "help") | command("帮助", "help")

    async def handle(self, ctx: Context) -> list[Reply]:
        bot = ctx.services.config.bot
        trigger = (ctx.policy.triggers or [bot.name])[0]
        return [ctx.reply(help_text(bot.name, trigger, ctx.services.usages), kind="answer")]
