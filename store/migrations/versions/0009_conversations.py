"""conversations: open conversations (a report waiting for its place, a notice waiting for 确认) kept in the
store, so a restart resumes them

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("sender", sa.String(length=128), nullable=False),
        sa.Column("handler", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("deadline", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_conversations_group_sender", "conversations", ["group_id", "sender"], unique=True)
    op.create_index("ix_conversations_deadline", "conversations", ["deadline"])


def downgrade() -> None:
    op.drop_index("ix_conversations_deadline", table_name="conversations")
    op.drop_index("ux_conversations_group_sender", table_name="conversations")
    op.drop_table("conversations")
