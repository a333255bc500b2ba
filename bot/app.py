"""The app: the ONE module that names concrete classes. It wires store, channels, sender, classifier,
knowledge, tickets, notices and handlers from the config into a `Services` bundle of ports (core/ports.py).

Plugins are found by name: the built-in channels and ticket backends below, or any module a config block
names (`channels: {echo: {module: tests.plugins.echo_channel}}`, `tickets.backend: my.module`); handlers in
handlers/ and in the modules of `plugins:`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bot.classifier_loading import BackgroundClassifier
from bot.clock import SystemClock
from bot.config import Config, ConfigError, validate_block
from bot.conversations import StoredConversations
from bot.groups import GroupDirectory
from bot.knowledge_loading import GapRecords, KnowledgeSlot
from bot.notices import NoticeService
from bot.retrain import Retrainer
from bot.router import Outcome, Router
from bot.sender import ThrottledSender
from bot.web.uploads import DocumentLibrary
from core.handler import Handler
from core.message import Message
from core.ports import Channel, Classifier, Clock, Services, TicketBackend
from core.registry import (
    PluginError,
    TicketBackendContext,
    handler_modules,
    import_handlers,
    load_channel_plugin,
    load_ticket_backend_plugin,
    registered_handlers,
)
from knowledge.staff_faq import StaffFAQ
from knowledge.types import Answerer
from nlp.classifier import LiveClassifier, load_classifier
from store import Store
from tickets.desk import DeskSettings, ReportDesk
from tickets.satisfaction import SurveySettings
from workbench.ports import Backoffice
from workbench.settings import WorkbenchSettings
from workbench.web import Workbench

if TYPE_CHECKING:
    from fastapi import APIRouter

log = logging.getLogger(__name__)
STOP_TIMEOUT = 10.0  # seconds each part may take to stop

# the built-in plugins, by the name the config uses
CHANNEL_MODULES = {
    "simulator": "channels.simulator",
    "console": "channels.console",
    "wechaty": "channels.wechaty",
    "wecom_bot": "channels.wecom_bot",  # docs/wecom.md
    "wecom_kf": "channels.wecom_kf",
}
TICKET_BACKEND_MODULES = {"open311": "tickets.open311"}
HANDLER_PACKAGES = ("handlers",)


# --- channels ---------------------------------------------------------------------------------------------


def _block_module(name: str, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    block = dict(block)
    module = block.pop("module", None) or CHANNEL_MODULES.get(name)
    if not isinstance(module, str) or not module:
        raise ConfigError(f"{name}: channels.{name}: name the channel's module (`module: a.module`)")
    return module, block


def build_channel(config: Config, name: str) -> Channel:
    """The channel `name` of the config's `channels:` block, built by its plugin (tests build one alone)."""
    block = config.main.channels.blocks().get(name)
    if block is None:
        raise ConfigError(f"{config.path}: channels.{name}: no such channel is switched on")
    module, block = _block_module(name, block)
    try:
        plugin = load_channel_plugin(module)
    except PluginError as e:
        raise ConfigError(f"{config.path}: channels.{name}: {e}") from None
    return plugin.build(validate_block(plugin.settings, block, config, f"channels.{name}"), config)


def build_channels(config: Config) -> dict[str, Channel]:
    """Every channel switched on in the config whose plugin says it can run (WeChat needs a token)."""
    channels: dict[str, Channel] = {}
    for name, raw in config.main.channels.blocks().items():
        module, block = _block_module(name, raw)
        try:
            plugin = load_channel_plugin(module)
        except PluginError as e:
            raise ConfigError(f"{config.path}: channels.{name}: {e}") from None
        settings = validate_block(plugin.settings, block, config, f"channels.{name}")
        if plugin.enabled(settings):
            ch = plugin.build(settings, config)
            ch.name = name  # the config's name is the channel's name: replies and records carry it
            channels[name] = ch
    return channels


# --- tickets ----------------------------------------------------------------------------------------------


def local_url(config: Config) -> str:
    """This process's HTTP side as a client on this machine reaches it."""
    http = config.main.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    return f"http://{host}:{config.http_port}"


def builtin_base_url(config: Config) -> str:
    return f"{local_url(config)}/open311/v2"


def public_url(config: Config) -> str:
    """Where staff open the workbench (`http.public_url`): the configured address, never one a request claims
    (a forged Host header must not redirect a sign-in link)."""
    return config.main.http.public_url.rstrip("/") or local_url(config)


def build_ticket_backend(config: Config, clock: Clock) -> tuple[TicketBackend, float]:
    """The ticket backend client the config names (`tickets.backend`), and how often to poll it."""
    t = config.main.tickets
    module = TICKET_BACKEND_MODULES.get(t.backend, t.backend)
    try:
        plugin = load_ticket_backend_plugin(module)
    except PluginError as e:
        raise ConfigError(f"{config.path}: tickets.backend: {e}") from None
    block: dict[str, Any] = dict(t.backend_settings)
    if (
        t.backend == "open311"
    ):  # its settings are the `tickets:` keys of earlier versions (and the contract's)
        block = {"url": t.open311_url, "jurisdiction_id": t.jurisdiction_id, **block}
    settings = validate_block(plugin.settings, block, config, "tickets.backend_settings")
    ctx = TicketBackendContext(
        api_key=config.ticket_api_key,
        builtin_url=builtin_base_url(config),
        jurisdiction_id=t.jurisdiction_id,
        clock=clock,
    )
    return plugin.build(settings, ctx), plugin.poll_seconds(settings)


# --- the app ----------------------------------------------------------------------------------------------


class App:
    """One bot process. Tests build it with their own clock and channels; `serve` with the defaults."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        channels: Mapping[str, Channel] | None = None,
        knowledge: Answerer | None = None,
        train_in_background: bool = False,
        classifier: Classifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = Store(config.database_url)
        self.store.migrate()
        self.channels: dict[str, Channel] = dict(channels) if channels is not None else build_channels(config)
        self.sender = ThrottledSender(self.channels, config.main.send_limits, self.clock, self.store)
        # `serve` trains in the background (HTTP at once); tests and one-shot commands wait here; a benchmark
        # may hand in another classifier to compare
        self.training: BackgroundClassifier | None = None
        self.model: LiveClassifier | None = None
        if classifier is None:
            if train_in_background:
                classifier = self.training = BackgroundClassifier(config)
            else:
                classifier = self.model = load_classifier(config)
        self.groups = GroupDirectory(  # issue 6: groups the bot is added to, greeted once
            config,
            self.store,
            self.clock,
            self.sender,
            greets_on_join=[n for n, ch in self.channels.items() if ch.capabilities.greets_on_join],
        )
        self.knowledge = KnowledgeSlot(knowledge)
        conversations = StoredConversations(self.store, config.process_name)
        backend, poll_seconds = build_ticket_backend(config, self.clock)
        t = config.main.tickets
        desk = ReportDesk(  # issue 4: reports -> tickets, durably
            config,
            self.store,
            self.clock,
            self.sender,
            self.groups,
            classifier,
            conversations,
            backend,
            DeskSettings(
                merge_window_hours=t.merge_window_hours,
                place_timeout_seconds=t.place_timeout_seconds,
                poll_interval_seconds=poll_seconds,
                inflight_grace_seconds=t.recovery_grace_seconds,
                surveys=SurveySettings(  # issue 14: 满意 / 基本满意 / 不满意 when a ticket is closed
                    mode=t.satisfaction,
                    days=t.satisfaction_days,
                    private_channels=frozenset(
                        n for n, ch in self.channels.items() if ch.capabilities.private_chats
                    ),
                ),
                alert_groups=tuple((a.group, a.channel, a.community) for a in t.alert_groups),
                summary_at=t.summary_at,
            ),
        )
        desk.outbox.base_delay, desk.outbox.max_delay = t.retry_base_seconds, t.retry_max_seconds
        desk.outbox.lease_seconds = desk.notifier.claim_lease_seconds = t.lease_seconds
        self.desk = desk
        # issue 6: staff notices, delivered durably
        self.notices = NoticeService(config, self.store, self.clock, self.sender, self.groups)
        modules = handler_modules(HANDLER_PACKAGES, config.main.plugins)
        try:
            import_handlers(HANDLER_PACKAGES, config.main.plugins)
        except PluginError as e:
            raise ConfigError(f"{config.path}: plugins: {e}") from None
        classes = registered_handlers(modules)
        self.services = Services(
            config=config,
            clock=self.clock,
            classifier=classifier,
            sender=self.sender,
            conversations=conversations,
            groups=self.groups,
            knowledge=self.knowledge,
            gaps=GapRecords(self.store),
            tickets=desk,
            notices=self.notices,
            usages=tuple(c.usage for c in sorted(classes, key=lambda c: c.usage_rank) if c.usage),
        )
        # issue 14: documents and the FAQ as staff manage them, and the staff workbench at /staff/
        self.library = DocumentLibrary(self.knowledge, config)
        self.staff_faq = StaffFAQ(config.faq, self.store, self.clock, self.knowledge.full)
        self.workbench = Workbench(
            Backoffice(self.services, self.library, self.staff_faq, self.store, public_url(config)),
            validate_block(WorkbenchSettings, config.main.workbench, config, "workbench"),
        )
        # issue 11: corrections folded in nightly, in a thread
        self.retrainer = Retrainer(config, self.store, self.clock, self._live_model)
        self.handlers = [cls(self.services, self._handler_settings(cls)) for cls in classes]
        unknown = set(config.main.handlers) - {h.name for h in self.handlers}
        if unknown:
            raise ConfigError(f"{config.path}: handlers.{sorted(unknown)[0]}: no such handler")
        self.router = Router(self.services, config, self.store, self.handlers)
        for ch in self.channels.values():
            self.router.accounts.add(ch.account)
        self._group_queues: dict[str, asyncio.Queue[Message]] = {}
        self._group_workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.outcomes: list[Outcome] = []  # the most recent outcomes, for the demo and tests
        self.started = False
        self.not_owned = 0  # messages from groups another process owns, ignored

    def declared_routes(self) -> list[APIRouter]:
        """The HTTP routes the parts declare, for the web shell to mount: the channels' (the simulator's page and
        /sim API), the handlers', and the staff workbench's (/staff/)."""
        declared = [ch.routes() for ch in self.channels.values()] + [h.routes() for h in self.handlers]
        declared.append(self.workbench.routes())
        return [r for r in declared if r is not None]

    def _handler_settings(self, cls: type[Handler]) -> BaseModel | None:
        block = self.config.main.handlers.get(cls.name, {})
        if cls.settings_model is None:
            if block:
                raise ConfigError(f"{self.config.path}: handlers.{cls.name}: this handler takes no settings")
            return None
        return validate_block(cls.settings_model, block, self.config, f"handlers.{cls.name}")

    def _live_model(self) -> LiveClassifier | None:
        """The retrainable model; None while `serve` still trains it (or when training failed)."""
        if self.training is None:
            return self.model
        if not self.training.ready:
            return None
        try:
            return self.training.model()
        except RuntimeError:  # it could not be trained; the failure is logged and shown in /health
            return None

    # --- receiving: one ordered queue per group, so a slow handler in one group holds up no other

    async def inbox(self, msg: Message) -> None:
        if not msg.private and not self.config.owns(msg.group):
            # another process's account owns this group (`process:` settings): it answers there, not us
            self.not_owned += 1
            log.debug("message %s in %s ignored: the group belongs to another process", msg.id, msg.group)
            return
        # recorded before the channel acknowledges it (the simulator answers 202 after this returns): a crash
        # while the message waits in the queue loses nothing, the desk's recovery takes it
        admitted = self.router.admit(msg)
        if admitted is None:  # the bot's own message, or one the channel delivered before
            return
        q = self._group_queues.get(msg.group)
        if q is None:
            q = self._group_queues[msg.group] = asyncio.Queue()
        q.put_nowait(admitted)
        worker = self._group_workers.get(msg.group)
        if worker is None or worker.done():
            self._group_workers[msg.group] = asyncio.create_task(self._group_worker(msg.group, q))

    async def _classifier_ready(self) -> None:
        if self.training is not None:
            await self.training.wait()

    async def _group_worker(self, group: str, q: asyncio.Queue[Message]) -> None:
        await self._classifier_ready()  # recorded already: a message waits here for the model, never lost
        while not q.empty():
            msg = q.get_nowait()
            outcome = await self.router.on_message(msg, admitted=True)
            self.outcomes.append(outcome)
            del self.outcomes[:-200]
            q.task_done()

    async def handle(self, msg: Message) -> Outcome:
        """Route one message at once (tests and the demo); replies are queued on the sender."""
        outcome = await self.router.on_message(msg)
        self.outcomes.append(outcome)
        return outcome

    async def settle(self) -> None:
        """Wait until every received message is routed and every reply sent."""
        while True:
            await asyncio.gather(*(q.join() for q in self._group_queues.values()))
            await self.sender.drain()
            if all(q.empty() for q in self._group_queues.values()) and self.sender.pending() == 0:
                return

    # --- time-driven work

    async def tick(self) -> None:
        """Run what is due now: expired conversations, new groups, due notices. The background loop calls it
        every second."""
        await self.groups.tick()
        await self.notices.tick()
        await self.desk.tick()  # issue 4: outbox, polling, owed messages, overdue drafts
        await self.retrainer.tick()
        self.staff_faq.sync()  # FAQ entries another process's staff wrote, or the knowledge opened meanwhile
        for conv in self.services.conversations.expired(self.clock.now()):
            handler = self.router.handler(conv.handler)
            if handler is None:
                continue
            try:
                for r in await handler.expire(conv):
                    self.sender.submit(r)
            except Exception:
                log.exception("expiring a %s conversation failed", conv.handler)

    async def _ticker(self) -> None:
        await self._classifier_ready()  # the desk's recovery classifies what a crash cut off
        while True:
            await self.tick()
            await asyncio.sleep(1.0)

    # --- lifecycle

    async def start(self, *, background: bool = True) -> None:
        await self.desk.start()  # issue 4: re-send what was owed before a restart
        for name, ch in self.channels.items():
            await ch.start(self.inbox, self.groups.added)
            log.info("channel %s started", name)
        if background:
            self._tasks.append(asyncio.create_task(self._ticker(), name="ticker"))
        self.started = True

    async def stop(self) -> None:
        """Stop everything; a part that does not stop within STOP_TIMEOUT is logged and left behind, so a
        stuck connection can never hang a shutdown (what was accepted is in the store already)."""
        self.knowledge.stop()
        tasks = [*self._tasks, *self._group_workers.values()]
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for t in stuck:
                log.warning("task %s did not stop within %.0f s", t.get_name(), STOP_TIMEOUT)
        steps: list[tuple[str, Awaitable[None]]] = [
            ("retrain", self.retrainer.stop()),
            ("notices", self.notices.stop()),
            ("tickets", self.desk.stop()),
            ("sender", self.sender.stop()),
        ]
        steps += [(f"channel {name}", ch.stop()) for name, ch in self.channels.items()]
        for name, step in steps:
            # asyncio.wait, not wait_for: wait_for waits for a cancelled step to finish, and a step that
            # swallows its cancellation (a stuck network close) would then hang the shutdown for good
            task = asyncio.ensure_future(step)
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            if not done:
                task.cancel()
                log.warning("%s did not stop within %.0f s; left behind", name, STOP_TIMEOUT)
            elif task.exception() is not None:
                log.error("stopping %s failed: %r", name, task.exception())
        if self.training is not None:
            await self.training.settle(STOP_TIMEOUT)
        self.store.close()
        self.started = False

    def health(self) -> dict[str, Any]:
        store_ok = self.store.ping()
        owned = self.config.owned_groups()
        parts: dict[str, Any] = {
            "process": {
                "name": self.config.process_name,
                "groups": "all" if owned is None else owned,
                "ignored_messages": self.not_owned,
            },
            "store": {
                "status": "up" if store_ok else "down",
                "url": self.store.engine.url.render_as_string(),
            },
            "index": self.knowledge.health(),
            "classifier": self.training.health() if self.training is not None else {"status": "up"},
            "ticket_backend": self.desk.health(),
            "channels": {name: ch.health() for name, ch in self.channels.items()},
            "sender": {"pending": self.sender.pending(), "sent": self.sender.sent_count},
        }
        healthy = store_ok and all(c.get("status") == "up" for c in parts["channels"].values())
        return {"status": "ok" if healthy else "degraded", "parts": parts}
