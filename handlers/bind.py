"""/绑定: staff bind the group they are in to a community and grid.

    /绑定 焕玉里社区 网格A [标签…]     /绑定（查看本群绑定）     /解绑

The bot greets a group it is added to and treats it as unbound until then (bot/groups.py): answers still
work, tickets go to the default queue, and only 管理员 can send it notices by name.
"""

from __future__ import annotations

import re

from core.community import GroupInfo, Scope
from core.errors import GroupError
from core.handler import Context, Handler, Permission, Rule
from core.message import Reply
from core.registry import register

_COMMAND = re.compile(r"^[/／]\s*(?P<cmd>绑定群|解除绑定|绑定|解绑)|^(?P<bare>绑定|解绑)(?=[\s:：])")

_SPLIT = re.compile(r"[\s、,，]+")


def split_words(text: str) -> list[str]:
    return [w for w in _SPLIT.split(text.strip()) if w]


USAGE = "绑定的格式：/绑定 社区名 网格名，如“/绑定 {example}”。发“/解绑”解除绑定。"
BOUND = "好的，本群已绑定到{place}{was}。之后本群反映的问题会交给{place}处理，{community}的通知也会发到本群。"
CURRENT = "本群目前绑定在{place}（{how}）。"
UNBOUND_NOW = "本群还没有绑定社区和网格。"
PRIVATE = "请在要绑定的群里发送“/绑定 社区名 网格名”。"


def _is_bind(c: Context) -> bool:
    t = c.text.strip()
    m = _COMMAND.match(t)
    if m is None:
        return False
    return t.startswith(("/", "／")) or c.staff is not None  # the bare form only for staff


def _describe(g: GroupInfo) -> str:
    return f"{g.community}{g.grid}" if g.bound else "未绑定"


@register
class BindHandler(Handler):
    name = "bind"
    priority = 20
    rule = Rule(_is_bind, "/绑定")
    permission = Permission("社区工作者", "网格员", "管理员")

    async def handle(self, ctx: Context) -> list[Reply]:
        m = ctx.message
        match = _COMMAND.match(ctx.text.strip())
        assert match is not None
        cmd = match.group("cmd") or match.group("bare") or "绑定"
        words = split_words(ctx.text.strip()[match.end() :].strip(" :："))
        if m.private:
            return [ctx.reply(PRIVATE, kind="refusal")]
        svc = ctx.services
        by = ctx.staff.id if ctx.staff else m.sender
        if cmd in ("解绑", "解除绑定"):
            current = svc.groups.resolve(m.group)
            scope = Scope.of(ctx.staff)
            if current.bound and not scope.allows(current.community, current.grid):
                return [
                    ctx.reply(
                        f"本群绑定在{_describe(current)}，不在您的管理范围内，不能解绑。", kind="refusal"
                    )
                ]
            after = svc.groups.unbind(m.group, by=by)
            if after.bound:
                return [
                    ctx.reply(f"已去掉在群里做的绑定；本群按配置文件属于{_describe(after)}。", kind="status")
                ]
            return [ctx.reply("已解除绑定。本群反映的问题会先交给社区统一处理。", kind="status")]
        if not words:
            info = svc.groups.resolve(m.group)
            head = (
                CURRENT.format(
                    place=_describe(info), how="配置文件" if info.source == "config" else "群内绑定"
                )
                if info.bound
                else UNBOUND_NOW
            )
            return [ctx.reply(head + USAGE.format(example=self._example()), kind="status")]
        community, grid, tags = self._place(words)
        try:
            before, after = svc.groups.bind(
                m.group,
                community,
                grid,
                tags,
                by=by,
                scope=Scope.of(ctx.staff),
                name=m.group_name,
                channel=m.channel,
            )
        except GroupError as e:
            return [ctx.reply(str(e), kind="refusal")]
        was = (
            f"（原来是{_describe(before)}）" if before.bound and _describe(before) != _describe(after) else ""
        )
        return [
            ctx.reply(BOUND.format(place=_describe(after), was=was, community=after.community), kind="status")
        ]

    def _place(self, words: list[str]) -> tuple[str, str, list[str]]:
        """`焕玉里社区 网格A 标签…`, also `焕玉里社区网格A` written together."""
        communities = {c.name: c.grids for c in self.services.config.communities}
        first = words[0]
        if first not in communities:
            for name, grids in communities.items():
                if first.startswith(name) and first[len(name) :].strip("/·-") in grids:
                    return name, first[len(name) :].strip("/·-"), words[1:]
        return first, words[1] if len(words) > 1 else "", words[2:]

    def _example(self) -> str:
        cs = self.services.config.communities
        return f"{cs[0].name} {cs[0].grids[0]}" if cs and cs[0].grids else "焕玉里社区 网格A"
