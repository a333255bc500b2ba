"""Staff corrections re-route tickets and, folded in by `doorstep train`, change how the next message is filed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.commands.train import retrain
from bot.config import Config
from bot.store import Store
from bot.store.models import Ticket, TicketCorrection, TicketReport
from bot.tickets.corrections import CorrectionError, correct
from handlers.classifier import load_classifier

PHRASE = "咱们院那个大铁笼子又趴窝了，{n}号楼的人全得爬上去"  # a community's own word for its lift


@pytest.fixture
def store(config: Config) -> Store:
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
    probe = PHRASE.format(n=9)
    before = load_classifier(config).classify(probe)
    assert before.service_code != "property_repair", "the phrase must be one the model gets wrong today"
    for n in range(1, 11):
        tid = _ticket(store, PHRASE.format(n=n), service=before.service_code or "other")
        correct(store, config, ManualClock(), tid, service_code="property_repair", staff_id="s_li")
    out = retrain(config)
    assert out["corrections"] == 10
    after = load_classifier(config).classify(probe)
    assert after.needs_ticket and after.service_code == "property_repair"
