"""FAQ entries staff write in the workbench, kept in the store (`faq_entries`) beside config/faq.yaml's.

An entry is answered from the moment it is saved: the process that saved it swaps its FAQ matcher at once
(`StaffFAQ.apply`), and every other process sharing the store notices the change on its next tick (`sync`,
one cheap query) and swaps its own. No restart, and faq.yaml is never rewritten by a program.

`StaffFAQ` is the `FAQBook` port (core/ports.py); it is handed faq.yaml's entries and the knowledge service
it keeps up to date, and reads no configuration itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from core.errors import FAQError
from core.ports import Clock, FAQFile, FAQView
from knowledge.faq import FAQItem
from pii import mask_pii
from store import Store
from store.models import StaffFAQEntry

if TYPE_CHECKING:
    from knowledge.service import KnowledgeService

log = logging.getLogger(__name__)
SOURCE = "社区工作人员答复"
MAX_QUESTIONS = 20


def config_items(faq: FAQFile) -> list[FAQItem]:
    return [FAQItem(tuple(e.questions), e.answer, e.source, e.community) for e in faq.faq]


def stored_items(store: Store) -> list[FAQItem]:
    with store.session() as s:
        rows = s.scalars(
            select(StaffFAQEntry).where(StaffFAQEntry.removed_at.is_(None)).order_by(StaffFAQEntry.id)
        ).all()
        return [FAQItem(tuple(r.questions), r.answer, r.source, r.community) for r in rows]


def _view(r: StaffFAQEntry) -> FAQView:
    return FAQView(
        id=r.id,
        questions=tuple(r.questions),
        answer=r.answer,
        source=r.source,
        community=r.community,
        created_by=r.created_by,
        created_at=r.created_at,
    )


def entries(store: Store, community: str | None = None) -> list[FAQView]:
    """The live entries, newest first."""
    with store.session() as s:
        q = select(StaffFAQEntry).where(StaffFAQEntry.removed_at.is_(None)).order_by(StaffFAQEntry.id.desc())
        if community is not None:
            q = q.where(StaffFAQEntry.community == community)
        return [_view(r) for r in s.scalars(q)]


def add_entry(
    store: Store, questions: Sequence[str], answer: str, *, community: str, by: str, now: datetime
) -> int:
    qs = list(dict.fromkeys(mask_pii(q.strip())[:200] for q in questions if q.strip()))[:MAX_QUESTIONS]
    text = answer.strip()
    if not qs:
        raise FAQError("请至少写一个居民的问法")
    if not text:
        raise FAQError("答复不能为空")
    if len(text) > 1500:
        raise FAQError(f"答复太长了（{len(text)}字），请控制在1500字以内")
    with store.session() as s:
        row = StaffFAQEntry(
            questions=qs,
            answer=mask_pii(text),
            source=SOURCE,
            community=community[:64],
            created_by=by[:128],
            created_at=now,
        )
        s.add(row)
        s.flush()
        return int(row.id)


def remove_entry(store: Store, entry_id: int, now: datetime) -> FAQView | None:
    """Withdraw an entry; the entry as it was, or None when there is no such (live) entry."""
    with store.session() as s:
        row = s.get(StaffFAQEntry, entry_id)
        if row is None or row.removed_at is not None:
            return None
        row.removed_at = now
        return _view(row)


def version(store: Store) -> tuple[int, int]:
    """Changes whenever an entry is added or withdrawn (ids only grow; withdrawals are counted)."""
    with store.session() as s:
        top = s.scalar(select(func.max(StaffFAQEntry.id))) or 0
        gone = s.scalar(select(func.count()).where(StaffFAQEntry.removed_at.is_not(None))) or 0
    return int(top), int(gone)


class StaffFAQ:
    """The FAQ as staff keep it, and a process's knowledge service answering from faq.yaml plus the stored
    entries. `service()` is the knowledge service once it is open (None before, or with a plain answerer)."""

    def __init__(
        self, faq: FAQFile, store: Store, clock: Clock, service: Callable[[], KnowledgeService | None]
    ) -> None:
        self.faq = faq
        self.store = store
        self.clock = clock
        self.service = service
        self._applied: tuple[int, tuple[int, int]] | None = None  # (id of the knowledge object, version)

    # --- the FAQBook port

    def configured(self) -> list[FAQView]:
        return [
            FAQView(
                id=0, questions=tuple(e.questions), answer=e.answer, source=e.source, community=e.community
            )
            for e in self.faq.faq
        ]

    def written(self) -> list[FAQView]:
        return entries(self.store)

    def add(self, questions: Sequence[str], answer: str, *, community: str, by: str) -> int:
        """Save an entry and answer from it at once in this process (others follow on their tick)."""
        entry = add_entry(self.store, questions, answer, community=community, by=by, now=self.clock.now())
        self.apply()
        return entry

    def remove(self, entry_id: int) -> FAQView | None:
        gone = remove_entry(self.store, entry_id, self.clock.now())
        if gone is not None:
            self.apply()
        return gone

    # --- keeping the knowledge service up to date

    def apply(self) -> None:
        """Swap the knowledge service's FAQ now (faq.yaml's entries first, then the stored ones)."""
        knowledge = self.service()
        if knowledge is None:
            return
        v = version(self.store)
        stored = stored_items(self.store)
        knowledge.replace_faq(config_items(self.faq) + stored)
        self._applied = (id(knowledge), v)
        log.info("FAQ: %d staff entries in use", len(stored))

    def sync(self) -> None:
        """From the tick: apply when the knowledge service is new (opened in the background) or the stored
        entries changed (another process, or this one)."""
        knowledge = self.service()
        if knowledge is None:
            return
        v = version(self.store)
        if self._applied == (id(knowledge), v):
            return
        if self._applied is None and v == (0, 0):  # nothing stored: faq.yaml's entries are in use already
            self._applied = (id(knowledge), v)
            return
        self.apply()
