"""privacy and webhooks: the contact a resident gave, kept apart from the masked text; signed webhooks taken

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact", sa.String(length=255), nullable=False, server_default=""))
    op.create_table(
        "webhook_receipts",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_webhook_receipts_expires_at", "webhook_receipts", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_receipts_expires_at", table_name="webhook_receipts")
    op.drop_table("webhook_receipts")
    with op.batch_alter_table("ticket_reports", schema=None) as batch_op:
        batch_op.drop_column("contact")
