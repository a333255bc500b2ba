"""A handler in one module, added by configuration alone (`plugins: [tests.plugins.echo_handler]`): it says
back what follows 回声, and its usage joins 帮助."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from core.handler import Context, Handler, Rule
from core.message import Reply
from core.registry import register

USAGE = "回声测试：发“回声 你好”，我原样说回来"


class EchoHandlerSettings(BaseModel):
    """`handlers: {echo: {prefix: ...}}`"""

    model_config = ConfigDict(extra="forbid")

    prefix: str = "回声："


@register
class EchoHandler(Handler):
    name = "echo"
    priority = 15
    rule = Rule(lambda c: c.text.startswith("回声"), "回声")
    usage = USAGE
    usage_rank = 90
    settings_model = EchoHandlerSettings

    async def handle(self, ctx: Context) -> list[Reply]:
        prefix = self.settings_as(EchoHandlerSettings).prefix
        return [ctx.reply(prefix + ctx.text.removeprefix("回声").strip())]
