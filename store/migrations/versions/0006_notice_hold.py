"""quiet hours: a notice the desk owes a group may wait until the group's quiet hours are over

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import store.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_notices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket_notices", schema=None) as batch_op:
        batch_op.drop_column("not_before")
