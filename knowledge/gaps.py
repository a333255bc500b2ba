"""Knowledge gaps: questions the knowledge could not answer, kept for staff with group, asker and time (phone and
ID numbers masked, pii/__init__.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from pii import mask_pii
from store import Store
from store.models import KnowledgeGap


def record_gap(
    store: Store,
    *,
    group: str,
    question: str,
    sender: str = "",
    sender_name: str = "",
    community: str = "",
    now: datetime | None = None,
) -> int:
    with store.session() as s:
        gap = KnowledgeGap(
            group_id=group[:128],
            community=community[:64],
            sender=sender[:128],
            sender_name=sender_name[:128],
            question=mask_pii(question)[:2000],  # staff read it; nobody needs the asker's numbers
        )
        if now is not None:
            gap.asked_at = now
        s.add(gap)
        s.flush()
        return int(gap.id)


def mark_forwarded(store: Store, gap_id: int, to: str, now: datetime) -> None:
    with store.session() as s:
        s.execute(
            update(KnowledgeGap)
            .where(KnowledgeGap.id == gap_id)
            .values(status="forwarded", forwarded_to=to[:256], forwarded_at=now)
        )


def list_gaps(
    store: Store, *, community: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    q = select(KnowledgeGap).order_by(KnowledgeGap.asked_at.desc()).limit(limit)
    if community:
        q = q.where(KnowledgeGap.community == community)
    if status:
        q = q.where(KnowledgeGap.status == status)
    with store.session() as s:
        return [
            {
                "id": g.id,
                "group": g.group_id,
                "community": g.community,
                "sender": g.sender,
                "sender_name": g.sender_name,
                "question": mask_pii(g.question),  # rows stored before masking
                "asked_at": g.asked_at.isoformat(),
                "status": g.status,
                "forwarded_to": g.forwarded_to,
                "forwarded_at": g.forwarded_at.isoformat() if g.forwarded_at else None,
            }
            for g in s.scalars(q)
        ]
