"""The community model: the settings types that handlers and parts read (the bot's identity, group policy,
groups, staff, ticket services) and how the rest of Doorstep sees a group. bot/config.py loads and validates
the YAML into these; nothing here reads a file or the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROLES = ("社区工作者", "网格员", "物业", "管理员")


class Strict(BaseModel):
    """A settings block whose unknown keys are errors (a misspelt key is named, never ignored)."""

    model_config = ConfigDict(extra="forbid")


class BotIdentity(Strict):
    name: str = "家门口助手"
    aliases: list[str] = Field(default_factory=lambda: ["小门"])
    account: str = "doorstep-bot"  # the bot's own sender id on the simulator and console channels


class QuietHours(Strict):
    start: time = time(22, 0)
    end: time = time(7, 0)

    def contains(self, t: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps midnight


RespondMode = Literal["mention", "trigger", "auto"]


class GroupPolicy(Strict):
    """When the bot speaks in a group. Every field may be overridden per group."""

    respond: RespondMode = (
        "auto"  # mention: only when @-ed; trigger: also trigger words; auto: also clear questions/reports
    )
    triggers: list[str] = Field(default_factory=lambda: ["小门", "家门口", "请问", "报修", "投诉"])
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    repeat_window_minutes: float = Field(5.0, ge=0)
    user_per_minute: int = Field(6, ge=1)  # messages from one resident the bot handles per minute
    group_per_minute: int = Field(30, ge=1)  # messages in one group the bot handles per minute
    max_text_chars: int = Field(2000, ge=10)


class GroupPolicyOverride(Strict):
    respond: RespondMode | None = None
    triggers: list[str] | None = None
    quiet_hours: QuietHours | None = None
    repeat_window_minutes: float | None = Field(None, ge=0)
    user_per_minute: int | None = Field(None, ge=1)
    group_per_minute: int | None = Field(None, ge=1)
    max_text_chars: int | None = Field(None, ge=10)


class Community(Strict):
    name: str
    grids: list[str] = Field(default_factory=list)


class GroupConfig(Strict):
    id: str
    name: str = ""
    community: str = ""
    grid: str = ""
    tags: list[str] = Field(default_factory=list)
    channel: str = ""  # empty: whichever channel the group's messages arrive on
    policy: GroupPolicyOverride = Field(default_factory=GroupPolicyOverride)

    @model_validator(mode="after")
    def _default_name(self) -> GroupConfig:
        if not self.name:
            self.name = self.id
        return self


class StaffMember(Strict):
    id: str  # chat id, the same in every group and in private chat
    name: str
    roles: list[Literal["社区工作者", "网格员", "物业", "管理员"]]
    community: str = ""
    grids: list[str] = Field(default_factory=list)
    phone: str = ""
    wecom_userid: str = ""  # the same person in WeCom (企业微信 账号): staff commands from WeCom groups


class Service(Strict):
    service_code: str
    service_name: str
    description: str = ""
    group: str = ""
    keywords: list[str] = Field(default_factory=list)
    agency: str = ""

    @field_validator("service_code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not v.replace("_", "").isalnum() or not v.isascii():
            raise ValueError("expected an ASCII code of letters, digits and underscores")
        return v


# --- how the rest of Doorstep sees a group and who may reach it ------------------------------------------


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
