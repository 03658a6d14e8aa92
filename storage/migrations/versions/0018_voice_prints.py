"""The voice library: a print of each speaker of a show, heard alone on their own track.

Revision ID: 0018
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('voice_prints',
    sa.Column('show_id', sa.String(length=128), nullable=False),
    sa.Column('speaker_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('consent', sa.Boolean(), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('speech_s', sa.Float(), nullable=False),
    sa.Column('episodes', sa.Integer(), nullable=False),
    sa.Column('last_episode', sa.String(length=128), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('show_id', 'speaker_id')
    )


def downgrade() -> None:
    op.drop_table('voice_prints')
