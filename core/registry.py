"""Plugins by name: channels, ticket backends and handlers.

A channel or a ticket backend is one module (or package) with a module-level `plugin` object: a
`ChannelPlugin` or a `TicketBackendPlugin`, naming its own pydantic settings model and how to build it. The
config names the module (`channels: {echo: {module: tests.plugins.echo_channel}}`, `tickets.backend: open311`);
`load_channel_plugin` / `load_ticket_backend_plugin` import it and check what they found. A handler is a class
decorated `@register`; `handler_classes(modules)` imports the modules and returns every registered handler.

Nothing here imports a plugin by name: the names of the built-in ones are in bot/app.py.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from core.ports import Channel, Clock, CommunityConfig, TicketBackend

if TYPE_CHECKING:
    from core.handler import Handler

S = TypeVar("S", bound=BaseModel)
H = TypeVar("H", bound="type[Handler]")


class PluginError(ValueError):
    """A plugin module that cannot be used (not found, no `plugin`, the wrong kind). English, for the log and
    `doorstep check`."""


# --- what a plugin is given ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketBackendContext:
    """What a ticket backend client may know when it is built."""

    api_key: str  # the key configured (or generated for the built-in backend)
    builtin_url: str  # where `serve` mounts the built-in GeoReport v2 backend
    jurisdiction_id: str
    clock: Clock


# --- the plugin kinds ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelPlugin(Generic[S]):
    """A channel: its name, its settings model (validated from its `channels:` block) and its factory. The
    channel's HTTP routes, if any, come from `Channel.routes()` on what `build` returns."""

    name: str
    settings: type[S]
    build: Callable[[S, CommunityConfig], Channel]
    enabled: Callable[[S], bool] = lambda settings: True  # e.g. WeChat only with a puppet token

    def create(self, block: dict[str, object], config: CommunityConfig) -> Channel:
        return self.build(self.settings.model_validate(block), config)

    def validate(self, block: dict[str, object]) -> S:
        return self.settings.model_validate(block)


@dataclass(frozen=True)
class TicketBackendPlugin(Generic[S]):
    """A ticket backend client: the desk files tickets through what `build` returns."""

    name: str
    settings: type[S]
    build: Callable[[S, TicketBackendContext], TicketBackend]
    poll_seconds: Callable[[S], float]  # how often the desk asks the backend about open tickets

    def validate(self, block: dict[str, object]) -> S:
        return self.settings.model_validate(block)


P = TypeVar("P", ChannelPlugin[BaseModel], TicketBackendPlugin[BaseModel])


def _load(module: str, kind: type[P]) -> P:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise PluginError(f"plugin module {module!r} cannot be imported: {e}") from None
    plugin = getattr(mod, "plugin", None)  # the one attribute a plugin module is asked for, checked below
    if not isinstance(plugin, kind):
        raise PluginError(f"module {module!r} has no `plugin = {kind.__name__}(...)`")
    return plugin


def load_channel_plugin(module: str) -> ChannelPlugin[BaseModel]:
    return _load(module, ChannelPlugin)


def load_ticket_backend_plugin(module: str) -> TicketBackendPlugin[BaseModel]:
    return _load(module, TicketBackendPlugin)


# --- handlers -----------------------------------------------------------------------------------------------

_HANDLERS: list[type[Handler]] = []


def register(cls: H) -> H:
    """Class decorator: the handler takes part in routing (and its `usage` in 帮助)."""
    if cls not in _HANDLERS:
        _HANDLERS.append(cls)
    return cls


def import_handlers(packages: Sequence[str] = (), modules: Sequence[str] = ()) -> None:
    """Import every module of the given packages and the given modules, so their handlers register."""
    for package in packages:
        pkg = importlib.import_module(package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{package}.{mod.name}")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise PluginError(f"handler module {module!r} cannot be imported: {e}") from None


def registered_handlers(modules: Sequence[str] | None = None) -> list[type[Handler]]:
    """The registered handlers, lowest priority first; with `modules`, only those defined in them."""
    found = [c for c in _HANDLERS if modules is None or c.__module__ in modules]
    return sorted(found, key=lambda c: c.priority)


def handler_modules(packages: Sequence[str], modules: Sequence[str]) -> list[str]:
    """The module names `import_handlers(packages, modules)` imports."""
    names = list(modules)
    for package in packages:
        pkg = importlib.import_module(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    return names
