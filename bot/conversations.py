"""The open conversations, kept in the store (table `conversations`): one per group and sender, so a restart
resumes a report waiting for its place or a notice waiting for 确认, and its deadline still fires."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from core.conversation import Conversation
from store import Store
from store.models import ConversationRow


def _conversation(row: ConversationRow) -> Conversation:
    return Conversation(row.handler, row.group_id, row.sender, row.state, row.deadline, dict(row.data or {}))


class StoredConversations:
    """Implements core.conversation.Conversations on the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def open(
        self,
        handler: str,
        group: str,
        sender: str,
        *,
        state: str,
        deadline: datetime,
        data: Mapping[str, object] | None = None,
    ) -> Conversation:
        values = dict(data or {})
        for _ in range(3):  # another process may write the same person's conversation at the same moment
            try:
                with self.store.session() as s:
                    row = s.scalars(
                        select(ConversationRow).where(
                            ConversationRow.group_id == group[:128], ConversationRow.sender == sender[:128]
                        )
                    ).first()
                    if row is None:
                        row = ConversationRow(group_id=group[:128], sender=sender[:128])
                        s.add(row)
                    row.handler, row.state, row.data, row.deadline = handler, state, values, deadline
                break
            except IntegrityError:
                continue
        return Conversation(handler, group, sender, state, deadline, values)

    def get(self, group: str, sender: str, now: datetime) -> Conversation | None:
        with self.store.session() as s:
            row = s.scalars(
                select(ConversationRow).where(
                    ConversationRow.group_id == group[:128], ConversationRow.sender == sender[:128]
                )
            ).first()
            return _conversation(row) if row is not None and row.deadline > now else None

    def close(self, group: str, sender: str) -> None:
        with self.store.session() as s:
            s.execute(
                delete(ConversationRow).where(
                    ConversationRow.group_id == group[:128], ConversationRow.sender == sender[:128]
                )
            )

    def expired(self, now: datetime) -> list[Conversation]:
        with self.store.session() as s:
            rows = s.scalars(select(ConversationRow).where(ConversationRow.deadline <= now).limit(200)).all()
        gone: list[Conversation] = []
        for row in rows:
            with self.store.session() as s:
                # the claim: the one process whose delete takes the row runs its expiry
                won = s.execute(
                    delete(ConversationRow).where(
                        ConversationRow.id == row.id, ConversationRow.deadline == row.deadline
                    )
                )
                if getattr(won, "rowcount", 0) == 1:
                    gone.append(_conversation(row))
        return gone

    def __len__(self) -> int:
        with self.store.session() as s:
            return len(s.scalars(select(ConversationRow.id)).all())
