"""Show identity: the ``podcast:guid`` a show keeps for life, and where its feed moved to.

Revision ID: 0024
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shows") as batch:
        batch.add_column(sa.Column("podcast_guid", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("new_feed_url", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shows") as batch:
        batch.drop_column("new_feed_url")
        batch.drop_column("podcast_guid")
