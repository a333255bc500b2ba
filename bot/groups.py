"""Groups: which community and grid a group belongs to, binding new groups, and picking notice targets.

A group is known from config/groups.yaml, or because the bot saw a message in it. Groups the bot is added
to are unbound until staff binds them (`/绑定 焕玉里社区 网格A`, or the admin API); they still get answers,
and their tickets go to the default queue. A binding in the store overrides the config.

`GroupDirectory` is the `Groups` port (core/ports.py): the router tells it where each group was seen, the
parts ask it what a group is, whatever the config says:

    info = services.groups.resolve(group_id)     # GroupInfo: community, grid, tags, bound, channel

It also greets a group the bot is new in, once, through the Sender: on its first message, or, on a channel
that `greets_on_join` (WeChat), when the platform says the bot was added.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.community import GroupInfo, Scope
from core.errors import GroupError
from core.message import Reply
from core.ports import Clock, CommunityConfig, Groups, Sender
from store import Store
from store.models import ChatGroup

log = logging.getLogger(__name__)

ALL_WORDS = ("全部群", "所有群", "全部", "所有", "全体")
_SEPARATORS = " \t\r\n\u3000、,，+;；"
NO_TARGET = "请先写发给哪些群，再写通知内容，例如：/通知 网格3 明天9点到12点停水，请提前储水。"

GREETING = (
    "大家好，我是{bot}，社区的小助手。可以@我问社区政策和服务（如“助老食堂几点开饭”），"
    "也可以直接说要反映的问题（如“3号楼门口井盖松了”），我会登记并告诉大家进展。\n"
    "本群还没有绑定社区和网格：请社区工作人员在群里发送“/绑定 社区名 网格名”（如“/绑定 {example}”）。"
    "绑定前，大家反映的问题会先交给社区统一处理。"
)
# a group of groups.yaml the bot is added to (on a channel that reports joins)
WELCOME = (
    "大家好，我是{name}，社区的小助手。可以@我问社区政策和服务（会附上出处），也可以直接说要反映的问题"
    "（如“3号楼门口井盖松了”，可带照片或位置），我会登记工单、告诉您工单号，处理好了在群里通知。发“帮助”查看更多。"
)


class Lookups(Protocol):
    """What picking targets reads: the configured communities and the known groups (`Services` has both)."""

    @property
    def config(self) -> CommunityConfig: ...

    @property
    def groups(self) -> Groups: ...


def resolve_group(services: Lookups, group_id: str) -> GroupInfo:
    """The community, grid and tags of a group: a staff binding, else the config, else unbound."""
    return services.groups.resolve(group_id)


# --- picking notice targets -----------------------------------------------------------------------------------


@dataclass
class Selection:
    targets: list[str]  # the target words as written
    groups: list[GroupInfo]  # the groups they name, in order, each once
    rest: str = ""  # the text after the targets


def _names(services: Lookups, groups: list[GroupInfo], scope: Scope) -> dict[str, list[GroupInfo]]:
    """Every word that names a set of groups -> those groups."""
    names: dict[str, list[GroupInfo]] = {}
    bound = [g for g in groups if g.bound]

    def add(name: str, members: list[GroupInfo]) -> None:
        if name:
            names.setdefault(name, [])
            names[name].extend(m for m in members if m not in names[name])

    for w in ALL_WORDS:
        add(w, [g for g in bound if scope.allows(g.community, g.grid)])
        names.setdefault(w, [])
    communities = {g.community for g in bound} | set(_communities(services.config))
    for c in communities:
        add(c, [g for g in bound if g.community == c])
    grids_of: dict[str, set[str]] = {}
    for c, grids in _communities(services.config).items():
        for grid in grids:
            grids_of.setdefault(grid, set()).add(c)
    for g in bound:
        if g.grid:
            grids_of.setdefault(g.grid, set()).add(g.community)
    for grid, owners in grids_of.items():
        for c in owners:
            members = [g for g in bound if g.community == c and g.grid == grid]
            for joined in (f"{c}{grid}", f"{c}/{grid}", f"{c}·{grid}", f"{c}-{grid}"):
                add(joined, members)
        mine = [c for c in owners if not scope.everything and c == scope.community]
        if mine or len(owners) == 1:  # a bare grid name is the sender's own community's, or unambiguous
            add(
                grid,
                [
                    g
                    for g in bound
                    if g.community == (mine[0] if mine else next(iter(owners))) and g.grid == grid
                ],
            )
        else:
            names.setdefault(grid, [])
            names[f"?{grid}"] = []  # marks an ambiguous grid name
    for g in bound:
        for t in g.tags:
            add(t, [x for x in bound if t in x.tags and scope.allows(x.community, x.grid)])
    for g in groups:
        add(g.id, [g])
        add(g.name, [g])
    return names


def _ambiguous(services: Lookups, grid: str) -> str:
    owners = [c for c, grids in _communities(services.config).items() if grid in grids]
    return f"“{grid}”在{'和'.join(owners)}都有，请写成如“{owners[0]}{grid}”。"


def select_groups(services: Lookups, text: str, scope: Scope) -> Selection:
    """Read target words from the start of `text` (`网格3`, `示例社区`, `楼栋群`, a group's name, `全部`,
    several joined by 、 or spaces) and return the groups they name. Raises GroupError for a target that
    is out of the sender's scope or names no group, or when there is no target at all."""
    groups = services.groups.all()
    names = _names(services, groups, scope)
    ordered = sorted((n for n in names if not n.startswith("?")), key=len, reverse=True)
    pos = 0
    targets: list[str] = []
    picked: list[GroupInfo] = []
    while True:
        while pos < len(text) and text[pos] in _SEPARATORS:
            pos += 1
        hit = next(
            (
                n
                for n in ordered
                if text.startswith(n, pos)
                and (pos + len(n) == len(text) or text[pos + len(n)] in _SEPARATORS)
            ),
            None,
        )
        if hit is None:
            break
        targets.append(hit)
        pos += len(hit)
        if f"?{hit}" in names:
            raise GroupError(_ambiguous(services, hit))
        members = names[hit]
        outside = [g for g in members if not scope.allows(g.community, g.grid)]
        if outside:
            raise GroupError(f"“{hit}”不在您可以发通知的范围内（{scope.describe()}）。")
        if not members:
            raise GroupError(f"“{hit}”下面还没有群，换一个发送对象试试。")
        picked.extend(g for g in members if g not in picked)
    if not targets:
        raise GroupError(NO_TARGET)
    return Selection(targets=targets, groups=picked, rest=text[pos:].strip(_SEPARATORS))


def select_targets(services: Lookups, targets: Iterable[str], scope: Scope) -> Selection:
    """The admin API's form: each item must be exactly one target word."""
    items = [t.strip() for t in targets if t and t.strip()]
    if not items:
        raise GroupError("请至少给出一个发送对象（群名、网格、社区、标签或“全部”）。")
    picked: list[GroupInfo] = []
    for t in items:
        try:
            sel = select_groups(services, t, scope)
        except GroupError as e:
            if str(e) != NO_TARGET:
                raise
            sel = Selection(targets=[], groups=[], rest=t)
        if sel.rest:
            raise GroupError(f"没有找到发送对象“{t}”（可以是群名、网格、社区、标签或“全部”）。")
        picked.extend(g for g in sel.groups if g not in picked)
    return Selection(targets=items, groups=picked)


# --- the directory -----------------------------------------------------------------------------------------


def _communities(config: CommunityConfig) -> dict[str, list[str]]:
    return {c.name: list(c.grids) for c in config.communities}


class GroupDirectory:
    """Implements core.ports.Groups. `App.tick()` calls `tick()`, which records the groups seen since."""

    def __init__(
        self,
        config: CommunityConfig,
        store: Store,
        clock: Clock,
        sender: Sender,
        greets_on_join: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.sender = sender
        self.greets_on_join = frozenset(greets_on_join)  # channels that report being added to a group
        self._seen: dict[str, str] = {}  # group -> the channel it was last seen on in this process
        self._known: dict[str, str] = {}  # group -> channel already in the store

    # --- where groups are seen

    def seen(self, group: str, channel: str) -> None:
        self._seen[group] = channel

    def channel_of(self, group: str) -> str:
        return self._seen.get(group, "")

    # --- looking groups up

    def _from_row(self, row: ChatGroup) -> GroupInfo:
        return GroupInfo(
            id=row.group_id,
            name=row.name or row.group_id,
            community=row.community,
            grid=row.grid,
            tags=tuple(row.tags or ()),
            bound=True,
            source="binding",
            channel=row.channel or self.channel_of(row.group_id),
        )

    def _merge(self, group_id: str, row: ChatGroup | None) -> GroupInfo:
        if row is not None and row.bound:
            return self._from_row(row)
        cfg = self.config.group(group_id)
        seen_channel = (row.channel if row else "") or self.channel_of(group_id)
        if cfg is not None:
            return GroupInfo(
                id=cfg.id,
                name=cfg.name,
                community=cfg.community,
                grid=cfg.grid,
                tags=tuple(cfg.tags),
                bound=bool(cfg.community),
                source="config",
                channel=cfg.channel or seen_channel or self.channel_of(cfg.id),
            )
        name = (row.name if row else "") or group_id
        return GroupInfo(id=group_id, name=name, channel=seen_channel)

    def resolve(self, group: str) -> GroupInfo:
        with self.store.session() as s:
            row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == group)).first()
            if row is None:
                cfg = self.config.group(group)
                if cfg is not None and cfg.id != group:  # asked by the config name
                    row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == cfg.id)).first()
        return self._merge(group, row)

    def all(self) -> list[GroupInfo]:
        """Every group the bot knows: the config's and those it has seen, in config order then first seen."""
        with self.store.session() as s:
            rows = {r.group_id: r for r in s.scalars(select(ChatGroup).order_by(ChatGroup.id))}
        out = [self._merge(g.id, rows.pop(g.id, None)) for g in self.config.group_list]
        out.extend(self._merge(gid, row) for gid, row in rows.items())
        return out

    # --- binding

    def check_place(self, community: str, grid: str) -> None:
        """Raise GroupError unless the community (and grid) are ones the config knows."""
        known = _communities(self.config)
        if not community:
            raise GroupError("请写明社区名，如“/绑定 焕玉里社区 网格A”。")
        if known and community not in known:
            raise GroupError(f"没有找到“{community}”。已有的社区：{'、'.join(known)}。")
        grids = known.get(community, [])
        if grid and grids and grid not in grids:
            raise GroupError(f"{community}没有“{grid}”。可选的网格：{'、'.join(grids)}。")

    def bind(
        self,
        group: str,
        community: str,
        grid: str = "",
        tags: Sequence[str] = (),
        *,
        by: str = "",
        scope: Scope | None = None,
        name: str = "",
        channel: str = "",
    ) -> tuple[GroupInfo, GroupInfo]:
        """Bind a group to a community and grid; returns (before, after). Raises GroupError."""
        self.check_place(community, grid)
        if scope is not None and not scope.allows(community, grid):
            raise GroupError(f"您只能把群绑定到{scope.describe()}。")
        before = self.resolve(group)
        gid = before.id
        now = self.clock.now()
        with self.store.session() as s:
            row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == gid)).first()
            if row is None:
                row = ChatGroup(group_id=gid, first_seen_at=now, greeted_at=None)
                s.add(row)
            row.name = name or row.name or before.name
            row.channel = channel or row.channel or before.channel
            row.community, row.grid = community, grid
            row.tags = list(dict.fromkeys(t for t in tags if t)) or list(row.tags or before.tags)
            row.bound, row.bound_by, row.bound_at = True, by, now
        log.info("group %s bound to %s %s by %s", gid, community, grid, by or "?")
        return before, self.resolve(gid)

    def unbind(self, group: str, *, by: str = "") -> GroupInfo:
        """Drop a staff binding; the group falls back to its config entry, or becomes unbound."""
        with self.store.session() as s:
            row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == group)).first()
            if row is not None:
                row.bound, row.community, row.grid, row.bound_by = False, "", "", by
        log.info("group %s unbound by %s", group, by or "?")
        return self.resolve(group)

    # --- groups the bot is added to

    async def tick(self) -> None:
        for group, channel in list(self._seen.items()):
            if self._known.get(group) != channel:
                try:
                    self.joined(group, channel)
                except Exception as e:  # the store is down: try again next tick (logged with backoff)
                    self.store.failed(f"recording group {group}", e, self.clock.now())

    def joined(self, group_id: str, channel: str, name: str = "") -> bool:
        """Record that the bot is in this group on this channel; greet it if it is new. True if greeted."""
        now = self.clock.now()
        cfg = self.config.group(group_id)
        greet = False
        try:
            with self.store.session() as s:
                row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == group_id)).first()
                if row is None:
                    greet = cfg is None
                    s.add(
                        ChatGroup(
                            group_id=group_id,
                            channel=channel,
                            name=name or (cfg.name if cfg else group_id),
                            first_seen_at=now,
                            greeted_at=now if greet else None,
                        )
                    )
                elif row.channel != channel:
                    row.channel = channel
        except IntegrityError:  # another process recorded it first, and greeted it
            greet = False
        self._known[group_id] = channel
        # a channel that reports joins (WeChat) was greeted when the bot was added; the rest are greeted here
        if greet and channel in self.sender.channel_names() and channel not in self.greets_on_join:
            log.info("new group %s on %s: greeting, unbound until staff binds it", group_id, channel)
            self.sender.submit(Reply(group=group_id, text=self.greeting(), channel=channel, kind="status"))
        return greet

    async def added(self, group: str, channel: str) -> None:
        """The platform says the bot was added to `group` (a channel that `greets_on_join`): greet it, with how
        to bind it when it is not a group of the config."""
        configured = self.config.group(group) is not None
        text = WELCOME.format(name=self.config.bot.name) if configured else self.greeting()
        self.sender.submit(Reply(group=group, text=text, channel=channel, kind="notice"))

    def greeting(self) -> str:
        cfg = self.config
        example = "焕玉里社区 网格3"
        if cfg.communities:
            c = cfg.communities[0]
            example = f"{c.name} {c.grids[0]}" if c.grids else c.name
        return GREETING.format(bot=cfg.bot.name, example=example)
