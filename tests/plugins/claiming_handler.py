"""Handlers that claim messages before the group's policy (`Handler.claims`), added by configuration alone: one
takes the password it is waiting for, unaddressed; one whose claim is broken and raises on every message."""

from __future__ import annotations

from core.handler import Context, Handler
from core.message import Reply
from core.registry import register

PASSWORD = "芝麻开门"


@register
class PasswordHandler(Handler):
    name = "password"
    priority = 6

    def claims(self, ctx: Context) -> bool:
        return ctx.text.strip() == PASSWORD

    def check(self, ctx: Context) -> bool:
        return False  # only ever reached through `claims`

    async def handle(self, ctx: Context) -> list[Reply]:
        return [ctx.reply("门开了")]


@register
class BrokenClaimHandler(Handler):
    name = "broken_claim"
    priority = 4  # asked first: its failure must not keep the others from the message

    def claims(self, ctx: Context) -> bool:
        raise RuntimeError("a claim that fails")

    def check(self, ctx: Context) -> bool:
        return False

    async def handle(self, ctx: Context) -> list[Reply]:
        raise AssertionError("never reached")
