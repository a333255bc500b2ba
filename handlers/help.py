"""帮助: what the bot can do, in plain Chinese, built from every handler's `usage`.

"帮助" or "help" works without an @ too (the bot's own fallback tells people to send it), claimed before the
group's policy; so that a busy group where several people send it does not get the list again and again, an
unaddressed one is answered once in the group's repeated-question window (`repeat_window_minutes`), and not in
quiet hours. Asked with an @, in a private chat or as /帮助, it is always answered.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel

from core.handler import Context, Handler, Rule, command
from core.message import Reply
from core.ports import Services
from core.registry import register

HEAD = "我是{name}，社区的小助手，可以帮您："
FOOT = "在群里@我或以“{trigger}”开头说话我就会回复。工作人员可发 /通知 发布群通知。"
_BARE_HELP = re.compile(r"^(?:帮助|help)[\s?？!！。.]*$", re.IGNORECASE)


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

    def __init__(self, services: Services, settings: BaseModel | None = None) -> None:
        super().__init__(services, settings)
        self._shown: dict[str, datetime] = {}  # group -> when the list was last shown there

    def claims(self, ctx: Context) -> bool:
        msg = ctx.message
        if ctx.addressed or msg.private or not _BARE_HELP.match(ctx.text.strip()):
            return False  # addressed, it is routed as any request and always answered
        now = self.services.clock.now()
        if self.services.config.quiet_until(msg.group, now) is not None:
            return False
        last = self._shown.get(msg.group)
        window = timedelta(minutes=max(ctx.policy.repeat_window_minutes, 0))
        return last is None or now - last >= window

    async def handle(self, ctx: Context) -> list[Reply]:
        bot = ctx.services.config.bot
        trigger = (ctx.policy.triggers or [bot.name])[0]
        self._shown[ctx.message.group] = self.services.clock.now()
        return [ctx.reply(help_text(bot.name, trigger, ctx.services.usages), kind="answer")]
