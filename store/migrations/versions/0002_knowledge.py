"""knowledge: questions the knowledge could not answer (knowledge gaps)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=128), nullable=False),
        sa.Column("sender_name", sa.String(length=128), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("asked_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("forwarded_to", sa.String(length=256), nullable=False),
        sa.Column("forwarded_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("knowledge_gaps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_knowledge_gaps_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_knowledge_gaps_asked_at"), ["asked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("knowledge_gaps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_knowledge_gaps_asked_at"))
        batch_op.drop_index(batch_op.f("ix_knowledge_gaps_group_id"))
    op.drop_table("knowledge_gaps")
