"""Show identity: the ``podcast:guid`` a show keeps for life, where its feed moved to and its rooms announced
live; an episode's feed settings (season, episode type, show notes... as JSON).

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
        batch.add_column(sa.Column("live_items", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("feed_meta", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.drop_column("feed_meta")
    with op.batch_alter_table("shows") as batch:
        batch.drop_column("live_items")
        batch.drop_column("new_feed_url")
        batch.drop_column("podcast_guid")
