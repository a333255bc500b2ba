"""Small talk said to the bot: thanks, greetings, goodbyes, praise, "好的", and other chitchat addressed to it.

A short friendly answer, never "抱歉，这个我暂时帮不上忙" (that is for requests the bot cannot serve). Only what is said
*to* the bot (an @, a trigger word, a private chat, a quoted reply to its message): thanks between neighbours
are not the bot's to answer.
"""

from __future__ import annotations

from core.handler import Context, Handler, Rule
from core.message import Reply
from core.registry import register

REPLIES = {
    "thanks": "不客气，有需要随时找我。",
    "greeting": "您好，我在。可以直接问我社区政策和服务，或者说要反映的问题；发“帮助”看看我能做什么。",
    "bye": "好的，再见！有需要随时找我。",
    "praise": "谢谢夸奖！有需要随时找我。",
    "ack": "好的，有需要随时找我。",
}
CHITCHAT = (
    "这个我还不太会😊 我是社区的小助手：可以问我社区政策和服务，或者说要反映的问题；发“帮助”看看我能做什么。"
)


def _small_talk(c: Context) -> bool:
    cls = c.classification
    return (
        c.addressed
        and bool(c.text.strip())
        and (bool(cls.small_talk) or (cls.intent == "chitchat" and not cls.needs_ticket))
    )


@register
class SmallTalkHandler(Handler):
    name = "smalltalk"
    priority = 35  # before reports: "辛苦了" is never filed, whatever the model makes of it
    rule = Rule(_small_talk, "small talk to the bot")

    async def handle(self, ctx: Context) -> list[Reply]:
        text = REPLIES.get(ctx.classification.small_talk, CHITCHAT)
        return [ctx.reply(text, kind="answer")]
