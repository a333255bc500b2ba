"""A handler in one module, added by configuration alone (`plugins: [tests.plugins.echo_handler]`): it says
back what follows 回声, and its usage joins 帮助."""

from __future__ import annotations

from core.handler import Context, Handler, Rule
from core.message import Reply
from core.registry import register

USAGE = "回声测试：发“回声 你好”，我原样说回来"


@register
class EchoHandler(Handler):
    name = "echo"
    priority = 15
    rule = Rule(lambda c: c.text.startswith("回声"), "回声")
    usage = USAGE
    usage_rank = 90

    async def handle(self, ctx: Context) -> list[Reply]:
        return [ctx.reply("回声：" + ctx.text.removeprefix("回声").strip())]
