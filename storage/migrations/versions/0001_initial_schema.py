"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26

Every table of storage/models.py as first released. Types are spelled out here (not imported from
the models) so this file keeps describing the same schema when the models change.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op



revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('channel_settings',
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('channel_id', sa.String(length=64), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=True),
    sa.Column('auto_caption', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('platform', 'channel_id', name=op.f('pk_channel_settings'))
    )
    op.create_table('images',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('first_platform', sa.String(length=16), nullable=True),
    sa.Column('first_workspace_id', sa.String(length=64), nullable=True),
    sa.Column('first_channel_id', sa.String(length=64), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_images'))
    )
    op.create_table('model_versions',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('location', sa.String(length=1024), nullable=False),
    sa.Column('parent_id', sa.String(length=128), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rolled_back_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('candidate', 'active', 'retired')", name=op.f('ck_model_versions_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions'))
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index('uq_model_versions_one_active', ['status'], unique=True, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))

    op.create_table('processed_events',
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('platform', 'event_id', name=op.f('pk_processed_events'))
    )
    op.create_table('training_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('base_version', sa.String(length=128), nullable=True),
    sa.Column('result_version', sa.String(length=128), nullable=True),
    sa.Column('feedback_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('data_counts', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'not_promoted')", name=op.f('ck_training_runs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_runs')),
    sa.UniqueConstraint('result_version', name=op.f('uq_training_runs_result_version'))
    )
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_runs_status_started_at'), ['status', 'started_at'], unique=False)

    op.create_table('user_opt_outs',
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('opted_out_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('platform', 'user_id', name=op.f('pk_user_opt_outs'))
    )
    op.create_table('captions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('image_sha256', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.String(length=128), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=True),
    sa.Column('channel_id', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('message_ref', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("platform IN ('discord', 'slack', 'web', 'cli')", name=op.f('ck_captions_platform')),
    sa.ForeignKeyConstraint(['image_sha256'], ['images.sha256'], name=op.f('fk_captions_image_sha256_images')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_captions'))
    )
    with op.batch_alter_table('captions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_captions_image_sha256'), ['image_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_captions_platform_message_ref'), ['platform', 'message_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_captions_platform_user_id'), ['platform', 'user_id'], unique=False)

    op.create_table('model_activations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('version_id', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_model_activations_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_activations'))
    )
    op.create_table('corrections',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('image_sha256', sa.String(length=64), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('accepted', 'withdrawn', 'overridden')", name=op.f('ck_corrections_status')),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_corrections_caption_id_captions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_sha256'], ['images.sha256'], name=op.f('fk_corrections_image_sha256_images')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_corrections'))
    )
    with op.batch_alter_table('corrections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_corrections_caption_id_user_id'), ['caption_id', 'user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_corrections_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_corrections_image_sha256_status'), ['image_sha256', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_corrections_platform_user_id'), ['platform', 'user_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('corrections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_corrections_platform_user_id'))
        batch_op.drop_index(batch_op.f('ix_corrections_image_sha256_status'))
        batch_op.drop_index(batch_op.f('ix_corrections_created_at'))
        batch_op.drop_index(batch_op.f('ix_corrections_caption_id_user_id'))

    op.drop_table('corrections')
    op.drop_table('model_activations')
    with op.batch_alter_table('captions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_captions_platform_user_id'))
        batch_op.drop_index(batch_op.f('ix_captions_platform_message_ref'))
        batch_op.drop_index(batch_op.f('ix_captions_image_sha256'))

    op.drop_table('captions')
    op.drop_table('user_opt_outs')
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_runs_status_started_at'))

    op.drop_table('training_runs')
    op.drop_table('processed_events')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index('uq_model_versions_one_active', sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))

    op.drop_table('model_versions')
    op.drop_table('images')
    op.drop_table('channel_settings')

