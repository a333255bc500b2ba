"""FAQ entries staff write in the workbench, kept in the store (`faq_entries`) beside config/faq.yaml's.

An entry is answered from the moment it is saved: the process that saved it swaps its FAQ matcher at once
(`StaffFAQ.apply`), and every other process sharing the store notices the change on its next tick (`sync`,
one cheap query) and swaps its own. No restart, and faq.yaml is never rewritten by a program.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot.config import Config
from bot.pii import mask_pii
from bot.store import Store
from bot.store.models import StaffFAQEntry
from knowledge.faq import FAQItem

log = logging.getLogger(__name__)
SOURCE = "社区工作人员答复"
MAX_QUESTIONS = 20


class FAQError(ValueError):
    """An entry that cannot be saved; the message is Chinese, for staff."""


def config_items(config: Config) -> list[FAQItem]:
    return [FAQItem(tuple(e.questions), e.answer, e.source, e.community) for e in config.faq.faq]


def stored_items(store: Store) -> list[FAQItem]:
    with store.session() as s:
        rows = s.scalars(
            select(StaffFAQEntry).where(StaffFAQEntry.removed_at.is_(None)).order_by(StaffFAQEntry.id)
        ).all()
        return [FAQItem(tuple(r.questions), r.answer, r.source, r.community) for r in rows]


def entries(store: Store, community: str | None = None) -> list[dict[str, Any]]:
    with store.session() as s:
        q = select(StaffFAQEntry).where(StaffFAQEntry.removed_at.is_(None)).order_by(StaffFAQEntry.id.desc())
        if community is not None:
            q = q.where(StaffFAQEntry.community == community)
        return [
            {
                "id": r.id,
                "questions": list(r.questions),
                "answer": r.answer,
                "source": r.source,
                "community": r.community,
                "created_by": r.created_by,
                "created_at": r.created_at,
            }
            for r in s.scalars(q)
        ]


def add_entry(
    store: Store, questions: list[str], answer: str, *, community: str, by: str, now: datetime
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


def remove_entry(store: Store, entry_id: int, now: datetime) -> dict[str, Any] | None:
    """Withdraw an entry; the entry as it was, or None when there is no such (live) entry."""
    with store.session() as s:
        row = s.get(StaffFAQEntry, entry_id)
        if row is None or row.removed_at is not None:
            return None
        row.removed_at = now
        return {"id": row.id, "questions": list(row.questions), "community": row.community}


def version(store: Store) -> tuple[int, int]:
    """Changes whenever an entry is added or withdrawn (ids only grow; withdrawals are counted)."""
    with store.session() as s:
        top = s.scalar(select(func.max(StaffFAQEntry.id))) or 0
        gone = s.scalar(select(func.count()).where(StaffFAQEntry.removed_at.is_not(None))) or 0
    return int(top), int(gone)


class StaffFAQ:
    """Keeps a process's knowledge service answering from faq.yaml plus the stored entries."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self._applied: tuple[int, tuple[int, int]] | None = None  # (id of the knowledge object, version)

    def apply(self, knowledge: Any) -> None:
        """Swap the knowledge service's FAQ now (faq.yaml's entries first, then the stored ones)."""
        replace = getattr(knowledge, "replace_faq", None)
        if not callable(replace):
            return
        v = version(self.store)
        replace(config_items(self.config) + stored_items(self.store))
        self._applied = (id(knowledge), v)
        log.info("FAQ: %d staff entries in use", len(stored_items(self.store)))

    def sync(self, knowledge: Any) -> None:
        """From the tick: apply when the knowledge service is new (opened in the background) or the stored
        entries changed (another process, or this one)."""
        if knowledge is None:
            return
        v = version(self.store)
        if self._applied == (id(knowledge), v):
            return
        if self._applied is None and v == (0, 0):  # nothing stored: faq.yaml's entries are in use already
            self._applied = (id(knowledge), v)
            return
        self.apply(knowledge)
