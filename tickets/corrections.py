"""Staff corrections of a ticket's service and urgency: the ticket is re-routed locally, the correction is kept as
a labelled example with its community, and `export` writes every correction as a training row for the classifier
(nlp/classifier.py reads DATA_DIR/classify_corrections.jsonl; a running bot retrains when it changes).

The built-in backend and Open311 GeoReport v2 have no call to change a request's service, so a ticket already
delivered keeps its backend service there; one still in the outbox goes out with the corrected service.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from core.community import Service
from core.errors import CorrectionError
from core.ports import Clock, CommunityConfig, Corrected
from store import Store
from store.models import Ticket, TicketCorrection, TicketReport

URGENCIES = ("normal", "urgent")


def find_service(config: CommunityConfig, name: str) -> Service | None:
    """A service by code (`municipal_facility`) or by its Chinese name (`市政设施`)."""
    n = name.strip().lower()
    for s in config.service_list:
        if n in (s.service_code.lower(), s.service_name.lower()):
            return s
    return None


def correct(
    store: Store,
    config: CommunityConfig,
    clock: Clock,
    ticket_id: int,
    *,
    service_code: str | None = None,
    urgency: str | None = None,
    staff_id: str = "",
) -> Corrected:
    if service_code is None and urgency is None:
        raise CorrectionError("请说明要改成哪个类别或紧急程度")
    svc = None
    if service_code is not None:
        svc = find_service(config, service_code)
        if svc is None:
            names = "、".join(s.service_name for s in config.service_list)
            raise CorrectionError(f"没有“{service_code}”这个类别，可选：{names}")
    if urgency is not None and urgency not in URGENCIES:
        raise CorrectionError("紧急程度只能是 normal 或 urgent")
    with store.session() as s:
        t = s.get(Ticket, ticket_id)
        if t is None:
            raise CorrectionError(f"没有找到工单#{ticket_id}")
        reports = s.scalars(
            select(TicketReport).where(TicketReport.ticket_id == t.id).order_by(TicketReport.id)
        ).all()
        old_service, old_urgency = t.service_code, t.urgency
        if svc is not None:
            t.service_code, t.service_name = svc.service_code, svc.service_name
        if urgency is not None:
            t.urgency = urgency
        for r in reports:
            r.service_code, r.urgency = t.service_code, t.urgency
        t.updated_at = clock.now()
        # the example: the reporters' own words, labelled as staff say they should have been filed
        words = reports[0].text if reports else t.description
        s.add(
            TicketCorrection(
                ticket_id=t.id,
                community=t.community,
                text=words[:2000],
                intent="hazard" if t.urgency == "urgent" else (reports[0].intent if reports else "complaint"),
                service_code=t.service_code,
                urgency=t.urgency,
                old_service_code=old_service,
                old_urgency=old_urgency,
                staff_id=staff_id[:128],
                created_at=clock.now(),
            )
        )
        return Corrected(
            t.id, t.service_code, t.service_name, t.urgency, old_service, old_urgency, t.community
        )


@dataclass(frozen=True)
class Exported:
    rows: int
    changed: bool  # whether the file's rows differ from what it held (new or changed corrections)


def export(store: Store, path: Path) -> Exported:
    """Write every correction as a classifier training row (JSON Lines, replaced atomically, and only when the
    rows differ from the file's, so an unchanged file keeps its time and its trained model).
    The latest correction of a ticket wins."""
    with store.session() as s:
        rows = s.scalars(select(TicketCorrection).order_by(TicketCorrection.id)).all()
        latest = {r.ticket_id: r for r in rows}
        lines = [
            json.dumps(
                {
                    "text": r.text,
                    "intent": r.intent if r.intent in ("complaint", "hazard") else "complaint",
                    "service_code": r.service_code,
                    "urgency": r.urgency,
                    "community": r.community,
                    "source": "correction",
                },
                ensure_ascii=False,
            )
            for r in latest.values()
            if r.text.strip()
        ]
    text = "".join(line + "\n" for line in lines)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if text == old:
        return Exported(len(lines), False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return Exported(len(lines), True)
