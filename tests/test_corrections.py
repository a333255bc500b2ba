"""Staff corrections re-route tickets and, folded in by `doorstep train`, change how the next message is filed."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app import App
from bot.classifier_loading import BackgroundClassifier
from bot.clock import ManualClock
from bot.commands.train import retrain
from bot.config import Config, load_config
from nlp.classifier import load_classifier
from store import Store
from store.models import Ticket, TicketCorrection, TicketReport
from tests.conftest import ROOT
from tests.support import RecordingChannel, Say
from tickets.corrections import CorrectionError, correct

PHRASE = "{n}号楼那台铁笼子又趴窝了"  # a community's own words for its lift breaking down
PROBE = "15号楼那台铁笼子也趴窝了"  # the next such message: not one of the corrected ones


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = Store(config.database_url)
    s.migrate()
    yield s
    s.close()


def _ticket(store: Store, text: str, service: str = "other") -> int:
    with store.session() as s:
        t = Ticket(
            service_code=service, service_name="其他", title=text[:20], description=text, community="示例社区"
        )
        s.add(t)
        s.flush()
        s.add(
            TicketReport(
                ticket_id=t.id,
                channel="rec",
                message_id=f"m{t.id}",
                group_id="g",
                sender="u",
                text=text,
                description=text,
                service_code=service,
                state="filed",
            )
        )
        return t.id


def test_a_correction_reroutes_the_ticket_and_is_kept(store: Store, config: Config) -> None:
    tid = _ticket(store, "楼道灯不亮")
    done = correct(
        store, config, ManualClock(), tid, service_code="物业维修", urgency="urgent", staff_id="s_li"
    )
    assert (done.service_code, done.urgency, done.old_service_code) == ("property_repair", "urgent", "other")
    with store.session() as s:
        t = s.get(Ticket, tid)
        assert t is not None and (t.service_code, t.service_name, t.urgency) == (
            "property_repair",
            "物业维修",
            "urgent",
        )
        [c] = s.query(TicketCorrection).all()
        assert (c.community, c.text, c.staff_id) == ("示例社区", "楼道灯不亮", "s_li")
    with pytest.raises(CorrectionError, match="没有找到工单"):
        correct(store, config, ManualClock(), 999, urgency="urgent")
    with pytest.raises(CorrectionError, match="没有“水电”这个类别"):
        correct(store, config, ManualClock(), tid, service_code="水电")


def test_ten_corrections_change_how_the_next_such_message_is_filed(
    store: Store, config: Config, data_dir: Path
) -> None:
    probe = PROBE
    before = load_classifier(config).classify(probe)
    assert before.service_code != "property_repair", "the phrase must be one the model gets wrong today"
    for n in range(1, 11):
        tid = _ticket(store, PHRASE.format(n=n), service=before.service_code or "other")
        correct(store, config, ManualClock(), tid, service_code="property_repair", staff_id="s_li")
    out = retrain(config)
    assert out["corrections"] == 10
    after = load_classifier(config).classify(probe)
    assert after.needs_ticket and after.service_code == "property_repair"


# --- retraining in a running bot: nightly, by the app's clock, and never on the event loop -------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(params=[False, True], ids=["loaded", "loaded-in-background"])
async def nightly_app(
    request: pytest.FixtureRequest,
    data_dir: Path,
    clock: ManualClock,
    channel: RecordingChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[App]:
    """The app as tests build it, and as `serve` does (the model loaded in a background thread)."""
    monkeypatch.setenv("DOORSTEP_TICKETS__RETRAIN_NIGHTLY", "true")
    monkeypatch.setenv("DOORSTEP_TICKETS__RETRAIN_AT", "03:00")
    a = App(
        load_config(ROOT / "config" / "doorstep.yaml"),
        clock=clock,
        channels={"rec": channel},
        train_in_background=request.param,
    )
    if isinstance(a.services.classifier, BackgroundClassifier):
        await a.services.classifier.wait()
    await a.start(background=False)
    yield a
    await a.stop()


def _to_local(clock: ManualClock, hour: int, minute: int, days: int = 0) -> None:
    """Move the clock forward to hour:minute Shanghai time, `days` days after today."""
    local = clock.now().astimezone(SHANGHAI)
    target = datetime.combine(local.date() + timedelta(days=days), dtime(hour, minute), tzinfo=SHANGHAI)
    assert target > local
    clock.advance((target - local).total_seconds())


async def test_the_nightly_retrain_folds_new_corrections_in_once_a_day(
    nightly_app: App, clock: ManualClock
) -> None:
    app, probe = nightly_app, PROBE
    classifier = app.services.classifier
    wrong = classifier.classify(probe).service_code
    assert wrong != "property_repair"
    for n in range(1, 11):
        tid = _ticket(app.store, PHRASE.format(n=n), service=wrong or "other")
        correct(app.store, app.config, clock, tid, service_code="property_repair", staff_id="s_li")
    await app.tick()  # 10:00: corrections are in the store, but it is not the retrain hour
    assert app.retrainer.job is None and classifier.classify(probe).service_code == wrong
    _to_local(clock, 2, 59, days=1)
    await app.tick()
    assert app.retrainer.job is None
    _to_local(clock, 3, 0)
    await app.tick()
    assert await app.retrainer.wait() is True and app.retrainer.retrains == 1
    assert classifier.classify(probe).service_code == "property_repair"  # the bot's own model, swapped

    # once a day: a correction made after 03:00 waits for the next night
    tid = _ticket(app.store, "咱们院的大铁笼子门夹人", service="property_repair")
    correct(app.store, app.config, clock, tid, urgency="urgent", staff_id="s_li")
    job = app.retrainer.job
    _to_local(clock, 3, 30)
    await app.tick()
    assert app.retrainer.job is job and app.retrainer.retrains == 1
    _to_local(clock, 3, 0, days=1)
    await app.tick()
    assert await app.retrainer.wait() is True and app.retrainer.retrains == 2
    # and a night without new corrections trains nothing
    _to_local(clock, 3, 0, days=1)
    await app.tick()
    assert await app.retrainer.wait() is False and app.retrainer.retrains == 2


async def test_a_retrain_runs_in_a_thread_while_the_bot_answers(
    app: App, channel: RecordingChannel, say: Say, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corrections file written by `doorstep train` beside the running bot: the tick starts the retrain in a
    thread and returns; messages are handled with the current model until the new one is swapped in."""
    import nlp.classifier as clf

    gate = threading.Event()
    real_trained_for = clf.trained_for

    def slow_trained_for(config: Config) -> clf.TrainedClassifier:
        assert gate.wait(60), "the test never opened the gate"
        return real_trained_for(config)

    monkeypatch.setattr(clf, "trained_for", slow_trained_for)
    classifier = app.services.classifier
    probe = PROBE
    before = classifier.classify(probe).service_code
    assert before != "property_repair"
    rows = [
        {
            "text": PHRASE.format(n=n),
            "intent": "complaint",
            "service_code": "property_repair",
            "urgency": "normal",
            "source": "correction",
        }
        for n in range(1, 11)
    ]
    path = clf.corrections_file(app.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    await app.tick()
    job = app.retrainer.job
    assert job is not None and not job.done()  # the tick returned while training waits
    await app.handle(say("3号楼门口井盖松了"))
    await app.settle()
    assert any("已收到" in t or "工单" in t for t in channel.texts()), channel.texts()
    assert classifier.classify(probe).service_code == before  # still the current model
    gate.set()
    assert await app.retrainer.wait() is True
    assert classifier.classify(probe).service_code == "property_repair"
    await app.tick()
    assert app.retrainer.job is job  # the file is folded in: nothing more to do
