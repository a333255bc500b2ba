"""Folding the staff's corrections into the classifier: `doorstep train` at once, and in a running bot every
night at `tickets.retrain_at` (local time) when `tickets.retrain_nightly` is on and new corrections exist.

In the bot, training runs in a worker thread: messages are classified by the current model meanwhile and the
retrained one is swapped in when it is ready. The app's tick also notices a corrections or community file changed
by another process (`doorstep train` beside a running `serve`) and loads the model trained for it.
"""

from __future__ import annotations

import asyncio
import logging
import time as timer
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.config import Config
from core.ports import Clock
from nlp.classifier import LiveClassifier, corrections_file, trained_for
from store import Store
from tickets.corrections import export

log = logging.getLogger(__name__)


def retrain(config: Config, store: Store) -> dict[str, object]:
    """Export every correction and train on them (or load the model already trained on these rows)."""
    out = export(store, corrections_file(config))
    start = timer.perf_counter()
    trained_for(config)
    return {
        "corrections": out.rows,
        "changed": out.changed,
        "file": str(corrections_file(config)),
        "train_seconds": round(timer.perf_counter() - start, 1),
    }


class Retrainer:
    """The bot's side of retraining, driven by the app's tick and its clock."""

    def __init__(
        self, config: Config, store: Store, clock: Clock, model: Callable[[], LiveClassifier | None]
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.model = model  # the bot's retrainable model; None while `serve` is still training it
        settings = self.config.main.tickets
        self.due: datetime | None = self.next_due(clock.now()) if settings.retrain_nightly else None
        self.job: asyncio.Task[bool] | None = None
        self.retrains = 0  # nightly retrains that folded new corrections in

    @property
    def classifier(self) -> LiveClassifier | None:
        return self.model()

    def next_due(self, after: datetime) -> datetime:
        """The first `retrain_at` local time strictly after `after`."""
        tz = ZoneInfo(self.config.main.timezone)
        local = after.astimezone(tz)
        at = datetime.combine(local.date(), self.config.main.tickets.retrain_at, tzinfo=tz)
        if at <= local:
            at = datetime.combine(
                local.date() + timedelta(days=1), self.config.main.tickets.retrain_at, tzinfo=tz
            )
        return at.astimezone(after.tzinfo)

    async def tick(self) -> None:
        live = self.classifier
        if live is None or (self.job is not None and not self.job.done()):
            return
        now = self.clock.now()
        if self.due is not None and now >= self.due:
            self.due = self.next_due(now)  # once a day, whatever the job finds
            self.job = asyncio.create_task(asyncio.to_thread(self._nightly), name="nightly-retrain")
        elif live.stale():
            self.job = asyncio.create_task(asyncio.to_thread(self._reload), name="classifier-reload")

    async def wait(self) -> bool | None:
        """The running job's result (whether it retrained), None if there is none; for tests and `stop`."""
        return await self.job if self.job is not None else None

    def _nightly(self) -> bool:
        try:
            return self._fold_in()
        except Exception:  # the bot goes on with the model it has; the corrections stay for the next night
            log.exception("nightly retrain failed; the previous model stays")
            return False

    def _fold_in(self) -> bool:
        live = self.classifier
        assert live is not None
        out = export(self.store, corrections_file(self.config))
        if not out.changed:
            log.info("nightly retrain: no new corrections")
            return False
        start = timer.perf_counter()
        live.reload()
        self.retrains += 1
        log.info("nightly retrain: %d corrections folded in, %.1f s", out.rows, timer.perf_counter() - start)
        return True

    def _reload(self) -> bool:
        live = self.classifier
        assert live is not None
        try:
            live.reload()
        except Exception:
            log.exception("reloading the classifier failed; the previous model stays")
            return False
        log.info("classifier reloaded: its training files changed")
        return True

    async def stop(self) -> None:
        if self.job is not None and not self.job.done():
            await self.job  # a thread cannot be cancelled: let the training finish before the store closes
