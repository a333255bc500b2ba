"""Knowledge gaps: questions the knowledge could not answer, kept for staff with group, asker and time (phone and
ID numbers masked, pii/__init__.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def mark_answered(store: Store, gap_ids: Sequence[int]) -> None:
    """Staff answered these questions (the workbench wrote an FAQ entry from them)."""
    if not gap_ids:
        return
    with store.session() as s:
        s.execute(update(KnowledgeGap).where(KnowledgeGap.id.in_(list(gap_ids))).values(status="answered"))


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


_GAP_SIMILARITY = 0.5


def _bigrams(text: str) -> set[str]:
    t = "".join(ch for ch in text if ch.isalnum())
    return {t[i : i + 2] for i in range(len(t) - 1)} or {t}


def group_gaps(gaps: Sequence[Mapping[str, Any]], threshold: float = _GAP_SIMILARITY) -> list[dict[str, Any]]:
    """Unanswered questions grouped by wording similarity (character bigrams, single link), most asked first
    (the admin API's gaps and the workbench's knowledge page).

    TODO(knowledge): group by embedding once KnowledgeService offers it."""
    grams = [_bigrams(str(g.get("question", ""))) for g in gaps]
    parent = list(range(len(gaps)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(gaps)):
        for j in range(i + 1, len(gaps)):
            a, b = grams[i], grams[j]
            if 2 * len(a & b) / max(1, len(a) + len(b)) >= threshold:  # Dice
                parent[root(j)] = root(i)
    by_root: dict[int, list[Mapping[str, Any]]] = {}
    for i, g in enumerate(gaps):
        by_root.setdefault(root(i), []).append(g)
    groups = list(by_root.values())
    out: list[dict[str, Any]] = []
    for members in groups:
        wordings: dict[str, int] = {}
        for m in members:
            wordings[str(m.get("question", ""))] = wordings.get(str(m.get("question", "")), 0) + 1
        out.append(
            {
                "question": max(wordings, key=lambda w: (wordings[w], -len(w))),
                "count": len(members),
                "askers": len({m.get("sender") or m.get("id") for m in members}),
                "communities": sorted({str(m.get("community", "")) for m in members if m.get("community")}),
                "last_asked_at": max(str(m.get("asked_at", "")) for m in members),
                "questions": members,
            }
        )
    out.sort(key=lambda g: g["last_asked_at"], reverse=True)
    out.sort(key=lambda g: g["count"], reverse=True)  # most asked first, then most recent
    return out
