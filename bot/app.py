"""The app: wires store, channels, sender, classifier, knowledge, tickets and handlers from the config."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from bot.channels import Channel, channel_class
from bot.classifier_loading import BackgroundClassifier
from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.groups import GroupDirectory
from bot.message import Message
from bot.notices import NoticeService
from bot.router import Outcome, Router
from bot.sender import ThrottledSender
from bot.services import Services
from bot.store import Store
from bot.tickets import build_desk
from bot.tickets.retrain import Retrainer
from handlers.base import handler_classes
from handlers.classifier import load_classifier

log = logging.getLogger(__name__)
STOP_TIMEOUT = 10.0  # seconds each part may take to stop


def build_channels(config: Config) -> dict[str, Channel]:
    ch = config.main.channels
    account = config.main.bot.account
    # WeChat first: a notice to a group that has not spoken yet goes to the first channel that serves it
    names = ["wechaty"] if ch.wechaty_token else []
    names += [n for n, on in (("simulator", ch.simulator), ("console", ch.console)) if on]
    names += [n for n, on in (("wecom_bot", ch.wecom_bot.enabled), ("wecom_kf", ch.wecom_kf.enabled)) if on]
    channels: dict[str, Channel] = {}
    for name in names:
        cls = channel_class(name)
        channels[name] = cls.from_config(config) if hasattr(cls, "from_config") else cls(account)
    return channels


class App:
    """One bot process. Tests build it with their own clock and channels; `serve` with the defaults."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        channels: dict[str, Channel] | None = None,
        knowledge: Any = None,
        train_in_background: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = Store(config.database_url)
        self.store.migrate()
        self.channels = channels if channels is not None else build_channels(config)
        self.sender = ThrottledSender(self.channels, config.main.send_limits, self.clock, self.store)
        for ch in (
            self.channels.values()
        ):  # a channel that speaks on its own (the WeChat greeting) uses the throttle too
            if hasattr(ch, "attach_sender"):
                ch.attach_sender(self.sender)
        self.services = Services(
            config=config,
            store=self.store,
            clock=self.clock,
            # `serve` trains in the background (HTTP at once); tests and one-shot commands wait here
            classifier=BackgroundClassifier(config) if train_in_background else load_classifier(config),
            sender=self.sender,
            knowledge=knowledge,
        )
        self.groups = GroupDirectory(self.services)  # issue 6: groups the bot is added to, greeted once
        self.services.notices = NoticeService(self.services)  # issue 6: staff notices, delivered durably
        self.services.tickets = build_desk(self.services)  # issue 4: reports -> tickets, durably
        self.retrainer = Retrainer(self.services)  # issue 11: corrections folded in nightly, in a thread
        self.handlers = [cls(self.services) for cls in handler_classes()]
        self.router = Router(self.services, self.handlers)
        for ch in self.channels.values():
            self.router.accounts.add(ch.account)
        self._group_queues: dict[str, asyncio.Queue[Message]] = {}
        self._group_workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.outcomes: list[Outcome] = []  # the most recent outcomes, for the demo and tests
        self.started = False
        self.not_owned = 0  # messages from groups another process owns, ignored

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
        if isinstance(self.services.classifier, BackgroundClassifier):
            await self.services.classifier.wait()

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
        svc = self.services
        await self.groups.tick()
        await svc.notices.tick()
        if svc.tickets is not None:  # issue 4: outbox, polling, owed messages, overdue drafts
            await svc.tickets.tick()
        await self.retrainer.tick()
        for conv in svc.conversations.expired(self.clock.now()):
            handler = self.router._by_name.get(conv.handler)
            if handler is None:
                continue
            try:
                for r in await handler.expire(conv.state):
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
        if self.services.tickets is not None:  # issue 4: re-send what was owed before a restart
            await self.services.tickets.start()
        for name, ch in self.channels.items():
            await ch.start(self.inbox)
            log.info("channel %s started", name)
        if background:
            self._tasks.append(asyncio.create_task(self._ticker(), name="ticker"))
        self.started = True

    async def stop(self) -> None:
        """Stop everything; a part that does not stop within STOP_TIMEOUT is logged and left behind, so a
        stuck connection can never hang a shutdown (what was accepted is in the store already)."""
        if self.services.knowledge_loading is not None:
            self.services.knowledge_loading.stop()
        tasks = [*self._tasks, *self._group_workers.values()]
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for t in stuck:
                log.warning("task %s did not stop within %.0f s", t.get_name(), STOP_TIMEOUT)
        steps: list[tuple[str, Awaitable[None]]] = [
            ("retrain", self.retrainer.stop()),
            ("notices", self.services.notices.stop()),
        ]
        if self.services.tickets is not None:
            steps.append(("tickets", self.services.tickets.stop()))
        steps.append(("sender", self.sender.stop()))
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
        self.store.close()
        self.started = False

    def _index_health(self) -> dict[str, Any]:
        kb = self.services.knowledge
        if kb is None:
            loading = self.services.knowledge_loading
            return loading.health() if loading is not None else {"status": "not loaded"}
        stats = getattr(kb, "stats", None)
        if stats is None:
            return {"status": "up"}
        try:
            st = stats()
        except Exception as e:  # health reports a broken index, never raises
            log.warning("index health check failed: %s", e)
            return {"status": "down", "error": str(e)}
        return {"status": "up", "documents": st.get("documents"), "chunks": st.get("chunks")}

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
            "index": self._index_health(),
            "classifier": self.services.classifier.health()
            if isinstance(self.services.classifier, BackgroundClassifier)
            else {"status": "up"},
            "ticket_backend": self.services.tickets.health()
            if self.services.tickets
            else {"status": "not configured"},
            "channels": {name: ch.health() for name, ch in self.channels.items()},
            "sender": {"pending": self.sender.pending(), "sent": self.sender.sent_count},
        }
        healthy = store_ok and all(c.get("status") == "up" for c in parts["channels"].values())
        return {"status": "ok" if healthy else "degraded", "parts": parts}
