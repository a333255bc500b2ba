"""Groups: which community and grid a group belongs to, binding new groups, and picking notice targets.

A group is known from config/groups.yaml, or because the bot saw a message in it. Groups the bot is added
to are unbound until staff binds them (`/绑定 焕玉里社区 网格A`, or the admin API); they still get answers,
and their tickets go to the default queue. A binding in the store overrides the config.

Other parts ask about a group through one function, whatever the config says:

    info = resolve_group(services, group_id)     # GroupInfo: community, grid, tags, bound, channel
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.config import StaffMember
from bot.message import Reply
from bot.store.models import ChatGroup

if TYPE_CHECKING:
    from bot.services import Services

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


class GroupError(ValueError):
    """A binding or a target that cannot be used; the message is for staff, in Chinese."""


@dataclass(frozen=True)
class GroupInfo:
    """A group as the rest of Doorstep sees it."""

    id: str
    name: str
    community: str = ""
    grid: str = ""
    tags: tuple[str, ...] = ()
    bound: bool = False  # has a community (from the config or a staff binding)
    source: str = "unbound"  # config | binding | unbound
    channel: str = ""  # the channel it is reached on; empty: not known yet

    @property
    def place(self) -> str:
        """示例社区网格3, for what staff read."""
        return f"{self.community}{self.grid}" if self.community else "未绑定"


# --- looking groups up ------------------------------------------------------------------------------------


def _from_row(row: ChatGroup, services: Services) -> GroupInfo:
    return GroupInfo(
        id=row.group_id,
        name=row.name or row.group_id,
        community=row.community,
        grid=row.grid,
        tags=tuple(row.tags or ()),
        bound=True,
        source="binding",
        channel=row.channel or services.group_channels.get(row.group_id, ""),
    )


def _merge(services: Services, group_id: str, row: ChatGroup | None) -> GroupInfo:
    if row is not None and row.bound:
        return _from_row(row, services)
    cfg = services.config.group(group_id)
    seen_channel = (row.channel if row else "") or services.group_channels.get(group_id, "")
    if cfg is not None:
        return GroupInfo(
            id=cfg.id,
            name=cfg.name,
            community=cfg.community,
            grid=cfg.grid,
            tags=tuple(cfg.tags),
            bound=bool(cfg.community),
            source="config",
            channel=cfg.channel or seen_channel or services.group_channels.get(cfg.id, ""),
        )
    name = (row.name if row else "") or group_id
    return GroupInfo(id=group_id, name=name, channel=seen_channel)


def resolve_group(services: Services, group_id: str) -> GroupInfo:
    """The community, grid and tags of a group: a staff binding, else the config, else unbound."""
    with services.store.session() as s:
        row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == group_id)).first()
        if row is None:
            cfg = services.config.group(group_id)
            if cfg is not None and cfg.id != group_id:  # asked by the config name
                row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == cfg.id)).first()
    return _merge(services, group_id, row)


def all_groups(services: Services) -> list[GroupInfo]:
    """Every group the bot knows: the config's and those it has seen, in config order then first seen."""
    with services.store.session() as s:
        rows = {r.group_id: r for r in s.scalars(select(ChatGroup).order_by(ChatGroup.id))}
    out = [_merge(services, g.id, rows.pop(g.id, None)) for g in services.config.groups.groups]
    out.extend(_merge(services, gid, row) for gid, row in rows.items())
    return out


# --- who may reach which groups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The groups a staff member may send notices to or bind: 管理员 everywhere, 网格员 their grids,
    other roles their community. The admin API acts with the whole scope."""

    everything: bool = True
    community: str = ""
    grids: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, staff: StaffMember | None) -> Scope:
        if staff is None or "管理员" in staff.roles or not staff.community:
            return cls()
        grid_only = set(staff.roles) == {"网格员"} and bool(staff.grids)
        return cls(
            everything=False, community=staff.community, grids=frozenset(staff.grids if grid_only else ())
        )

    def allows(self, community: str, grid: str = "") -> bool:
        if self.everything:
            return True
        if community != self.community:
            return False
        return not self.grids or grid in self.grids

    def describe(self) -> str:
        if self.everything:
            return "全部群"
        if self.grids:
            return self.community + "、".join(sorted(self.grids))
        return self.community


# --- binding ------------------------------------------------------------------------------------------------


def _communities(services: Services) -> dict[str, list[str]]:
    return {c.name: list(c.grids) for c in services.config.groups.communities}


def check_place(services: Services, community: str, grid: str) -> None:
    """Raise GroupError unless the community (and grid) are ones the config knows."""
    known = _communities(services)
    if not community:
        raise GroupError("请写明社区名，如“/绑定 焕玉里社区 网格A”。")
    if known and community not in known:
        raise GroupError(f"没有找到“{community}”。已有的社区：{'、'.join(known)}。")
    grids = known.get(community, [])
    if grid and grids and grid not in grids:
        raise GroupError(f"{community}没有“{grid}”。可选的网格：{'、'.join(grids)}。")


def bind_group(
    services: Services,
    group_id: str,
    community: str,
    grid: str = "",
    tags: Iterable[str] = (),
    *,
    by: str = "",
    scope: Scope | None = None,
    name: str = "",
    channel: str = "",
) -> tuple[GroupInfo, GroupInfo]:
    """Bind a group to a community and grid; returns (before, after). Raises GroupError."""
    check_place(services, community, grid)
    if scope is not None and not scope.allows(community, grid):
        raise GroupError(f"您只能把群绑定到{scope.describe()}。")
    before = resolve_group(services, group_id)
    gid = before.id
    now = services.clock.now()
    with services.store.session() as s:
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
    return before, resolve_group(services, gid)


def unbind_group(services: Services, group_id: str, *, by: str = "") -> GroupInfo:
    """Drop a staff binding; the group falls back to its config entry, or becomes unbound."""
    with services.store.session() as s:
        row = s.scalars(select(ChatGroup).where(ChatGroup.group_id == group_id)).first()
        if row is not None:
            row.bound, row.community, row.grid, row.bound_by = False, "", "", by
    log.info("group %s unbound by %s", group_id, by or "?")
    return resolve_group(services, group_id)


# --- picking notice targets -----------------------------------------------------------------------------------


@dataclass
class Selection:
    targets: list[str]  # the target words as written
    groups: list[GroupInfo]  # the groups they name, in order, each once
    rest: str = ""  # the text after the targets


def _names(services: Services, groups: list[GroupInfo], scope: Scope) -> dict[str, list[GroupInfo]]:
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
    communities = {g.community for g in bound} | set(_communities(services))
    for c in communities:
        add(c, [g for g in bound if g.community == c])
    grids_of: dict[str, set[str]] = {}
    for c, grids in _communities(services).items():
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


def _ambiguous(services: Services, grid: str) -> str:
    owners = [c for c, grids in _communities(services).items() if grid in grids]
    return f"“{grid}”在{'和'.join(owners)}都有，请写成如“{owners[0]}{grid}”。"


def select_groups(services: Services, text: str, scope: Scope) -> Selection:
    """Read target words from the start of `text` (`网格3`, `示例社区`, `楼栋群`, a group's name, `全部`,
    several joined by 、 or spaces) and return the groups they name. Raises GroupError for a target that
    is out of the sender's scope or names no group, or when there is no target at all."""
    groups = all_groups(services)
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


def select_targets(services: Services, targets: Iterable[str], scope: Scope) -> Selection:
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


# --- groups the bot is added to --------------------------------------------------------------------------------


class GroupDirectory:
    """Notices groups as the router sees them: remembers their channel, and greets a new group once.

    `App.tick()` calls `tick()`. A channel with its own `greeting` (WeChat greets when the bot is invited to a
    room) is left to greet; the group is still recorded as unbound here."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._known: dict[str, str] = {}  # group -> channel already in the store

    async def tick(self) -> None:
        for group, channel in list(self.services.group_channels.items()):
            if self._known.get(group) != channel:
                try:
                    self.joined(group, channel)
                except Exception as e:  # the store is down: try again next tick (logged with backoff)
                    self.services.store.failed(f"recording group {group}", e, self.services.clock.now())

    def joined(self, group_id: str, channel: str, name: str = "") -> bool:
        """Record that the bot is in this group on this channel; greet it if it is new. True if greeted."""
        svc = self.services
        now = svc.clock.now()
        cfg = svc.config.group(group_id)
        greet = False
        try:
            with svc.store.session() as s:
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
        ch = svc.sender.channels.get(channel)
        # a channel with its own greeting (WeChat) greets when the bot is invited; the rest are greeted here
        if greet and ch is not None and not hasattr(ch, "greeting"):
            log.info("new group %s on %s: greeting, unbound until staff binds it", group_id, channel)
            svc.sender.submit(Reply(group=group_id, text=self.greeting(), channel=channel, kind="status"))
        return greet

    def greeting(self) -> str:
        cfg = self.services.config
        example = "焕玉里社区 网格3"
        if cfg.groups.communities:
            c = cfg.groups.communities[0]
            example = f"{c.name} {c.grids[0]}" if c.grids else c.name
        return GREETING.format(bot=cfg.main.bot.name, example=example)


_SPLIT = re.compile(r"[\s、,，]+")


def split_words(text: str) -> list[str]:
    return [w for w in _SPLIT.split(text.strip()) if w]
