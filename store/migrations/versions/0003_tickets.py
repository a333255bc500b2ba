"""tickets: reports, the local ticket mirror, the durable outbox, owed group messages

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_code", sa.String(length=64), nullable=False),
        sa.Column("service_name", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("place", sa.String(length=255), nullable=False),
        sa.Column("place_key", sa.String(length=255), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("community", sa.String(length=64), nullable=False),
        sa.Column("grid", sa.String(length=64), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_notes", sa.Text(), nullable=False),
        sa.Column("agency", sa.String(length=128), nullable=False),
        sa.Column("status_version", sa.Integer(), nullable=False),
        sa.Column("remote_id", sa.String(length=64), nullable=True),
        sa.Column("remote_token", sa.String(length=64), nullable=True),
        sa.Column("sync", sa.String(length=16), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index("ix_tickets_merge", ["service_code", "status", "created_at"], unique=False)
        batch_op.create_index("ix_tickets_remote", ["remote_id"], unique=False)

    op.create_table(
        "ticket_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("mentions", sa.JSON(), nullable=False),
        sa.Column("in_reply_to", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("ticket_notices", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_notices_state", ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_notices_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "ticket_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("ticket_id"),
    )
    with op.batch_alter_table("ticket_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_outbox_due", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "ticket_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("sender", sa.String(length=128), nullable=False),
        sa.Column("sender_name", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("service_code", sa.String(length=64), nullable=False),
        sa.Column("intent", sa.String(length=16), nullable=False),
        sa.Column("place", sa.String(length=255), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("place_deadline", store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ticket_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_reports_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_reports_sender"), ["sender"], unique=False)
        batch_op.create_index("ix_ticket_reports_state", ["state", "place_deadline"], unique=False)
        batch_op.create_index(batch_op.f("ix_ticket_reports_ticket_id"), ["ticket_id"], unique=False)
        batch_op.create_index("ux_ticket_reports_message", ["channel", "message_id"], unique=True)

    op.create_table(
        "ticket_media",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("mime", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["ticket_reports.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ticket_media", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_media_report_id"), ["report_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_media_report_id"))

    op.drop_table("ticket_media")
    with op.batch_alter_table("ticket_reports", schema=None) as batch_op:
        batch_op.drop_index("ux_ticket_reports_message")
        batch_op.drop_index(batch_op.f("ix_ticket_reports_ticket_id"))
        batch_op.drop_index("ix_ticket_reports_state")
        batch_op.drop_index(batch_op.f("ix_ticket_reports_sender"))
        batch_op.drop_index(batch_op.f("ix_ticket_reports_group_id"))

    op.drop_table("ticket_reports")
    with op.batch_alter_table("ticket_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_outbox_due")

    op.drop_table("ticket_outbox")
    with op.batch_alter_table("ticket_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_notices_ticket_id"))
        batch_op.drop_index("ix_ticket_notices_state")

    op.drop_table("ticket_notices")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_remote")
        batch_op.drop_index("ix_tickets_merge")

    op.drop_table("tickets")
