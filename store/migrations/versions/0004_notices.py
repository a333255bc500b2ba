"""notices: chat groups and their bindings, staff notices, per-group notice deliveries

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("grid", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("bound", sa.Boolean(), nullable=False),
        sa.Column("bound_by", sa.String(length=128), nullable=False),
        sa.Column("bound_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("greeted_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id"),
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("group_ids", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_by_name", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("origin_channel", sa.String(length=32), nullable=False),
        sa.Column("origin_group", sa.String(length=128), nullable=False),
        sa.Column("ask_ack", sa.Boolean(), nullable=False),
        sa.Column("repeat", sa.String(length=64), nullable=False),
        sa.Column("schedule_label", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index("ix_notices_due", ["status", "next_run_at"], unique=False)

    op.create_table(
        "notice_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("occurrence", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("group_name", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notice_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_notice_deliveries_notice_id", ["notice_id"], unique=False)
        batch_op.create_index("ix_notice_deliveries_ready", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ux_notice_delivery_run_group", ["notice_id", "occurrence", "group_id"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("notice_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ux_notice_delivery_run_group")
        batch_op.drop_index("ix_notice_deliveries_ready")
        batch_op.drop_index("ix_notice_deliveries_notice_id")
    op.drop_table("notice_deliveries")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_due")
    op.drop_table("notices")
    op.drop_table("chat_groups")
