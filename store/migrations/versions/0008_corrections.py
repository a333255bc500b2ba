"""corrections: staff corrections of a ticket's service and urgency, kept as labelled training examples

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticket_corrections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("intent", sa.String(length=16), nullable=False),
        sa.Column("service_code", sa.String(length=64), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("old_service_code", sa.String(length=64), nullable=False),
        sa.Column("old_urgency", sa.String(length=16), nullable=False),
        sa.Column("staff_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_corrections_ticket_id", "ticket_corrections", ["ticket_id"])
    op.create_index("ix_ticket_corrections_community", "ticket_corrections", ["community"])


def downgrade() -> None:
    op.drop_index("ix_ticket_corrections_community", table_name="ticket_corrections")
    op.drop_index("ix_ticket_corrections_ticket_id", table_name="ticket_corrections")
    op.drop_table("ticket_corrections")
