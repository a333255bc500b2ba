"""The intent classifier trained in a background thread, so a process answers HTTP at once.

Training takes about a second on an idle machine and much longer on a loaded one (18 s was seen with other
work on two cores); `serve` must answer /health within 15 s of starting. Messages wait for the model in
their group's queue (`wait()`), and `classify()` blocks until it is ready, so nothing is classified by half a
model."""

from __future__ import annotations

import asyncio
import logging
import threading

from bot.config import Config
from core.intent import Classification
from nlp.classifier import LiveClassifier, load_classifier

log = logging.getLogger(__name__)


class BackgroundClassifier:
    """Implements core.intent.IntentClassifier."""

    def __init__(self, config: Config) -> None:
        self._ready = threading.Event()
        self._model: LiveClassifier | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._train, args=(config,), name="classifier-training", daemon=True).start()

    def _train(self, config: Config) -> None:
        try:
            self._model = load_classifier(config)
        except BaseException as e:  # handed to whoever classifies next: the error surfaces there
            self._error = e
            log.exception("training the intent classifier failed")
        finally:
            self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def model(self) -> LiveClassifier:
        self._ready.wait()
        if self._model is None:
            raise RuntimeError(f"the intent classifier could not be trained: {self._error!r}")
        return self._model

    def classify(self, text: str) -> Classification:
        return self.model().classify(text)

    async def wait(self) -> None:
        if not self._ready.is_set():
            await asyncio.to_thread(self._ready.wait)

    async def settle(self, timeout: float) -> None:
        """Let a training still running finish (bounded) before the process exits: an interpreter that exits
        while this thread is inside native code (scikit-learn, numpy) can abort with "terminate called without
        an active exception" instead of its own exit code."""
        if not self._ready.is_set():
            await asyncio.to_thread(self._ready.wait, timeout)

    def health(self) -> dict[str, str]:
        if not self.ready:
            return {"status": "training"}
        return {"status": "up"} if self._model is not None else {"status": "down", "error": repr(self._error)}
