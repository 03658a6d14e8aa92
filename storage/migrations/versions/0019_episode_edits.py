"""Edits of published episodes: the first run's kept basis, and the audit trail of edits.

Revision ID: 0019
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('episode_bases',
    sa.Column('episode_id', sa.String(length=128), nullable=False),
    sa.Column('input_hash', sa.String(length=64), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['episode_id'], ['episodes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('episode_id')
    )
    op.create_table('episode_edits',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('episode_id', sa.String(length=128), nullable=False),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('by', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hash_before', sa.String(length=64), nullable=False),
    sa.Column('hash_after', sa.String(length=64), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['episode_id'], ['episodes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('episode_edits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_episode_edits_episode_id'), ['episode_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('episode_edits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_episode_edits_episode_id'))
    op.drop_table('episode_edits')
    op.drop_table('episode_bases')
