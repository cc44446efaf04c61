"""consent, retention and many communities (issue 26)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

1. `community_settings`: what a Slack workspace or Discord server decided (training consent, image retention).
2. `privacy_notices`: the channels where the bot has said what it keeps.
3. `review_posts`: images the review digest asked people to look at (the retention sweep keeps them a while).
4. `images.blob_removed_at`: when an image's file left the blob store (or was never written).
5. `slack_installations`, `slack_bots`, `slack_oauth_states`: slack_sdk's installation and OAuth state stores,
   so that many workspaces install capbot (docs/slack.md).

The downgrade drops them: installations, consent and retention choices are lost with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'community_settings',
        sa.Column('platform', sa.String(length=16), nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.Column('training_consent', sa.Boolean(), nullable=True),
        sa.Column('image_retention_days', sa.Integer(), nullable=True),
        sa.Column('updated_at', UTC_TIME, nullable=False),
        sa.Column('updated_by', sa.String(length=64), nullable=True),
        sa.CheckConstraint('image_retention_days >= 0', name=op.f('ck_community_settings_retention')),
        sa.PrimaryKeyConstraint('platform', 'workspace_id', name=op.f('pk_community_settings')),
    )
    op.create_table(
        'privacy_notices',
        sa.Column('platform', sa.String(length=16), nullable=False),
        sa.Column('channel_id', sa.String(length=64), nullable=False),
        sa.Column('noticed_at', UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint('platform', 'channel_id', name=op.f('pk_privacy_notices')),
    )
    op.create_table(
        'review_posts',
        sa.Column('image_sha256', sa.String(length=64), nullable=False),
        sa.Column('posted_at', UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(['image_sha256'], ['images.sha256'], name=op.f('fk_review_posts_image_sha256_images'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('image_sha256', name=op.f('pk_review_posts')),
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blob_removed_at', UTC_TIME, nullable=True))
    _slack_tables()


def _slack_tables() -> None:
    # As slack_sdk 3.48's SQLAlchemyInstallationStore / SQLAlchemyOAuthStateStore define them (frozen here).
    op.create_table(
        'slack_installations',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('client_id', sa.String(length=32), nullable=False),
        sa.Column('app_id', sa.String(length=32), nullable=False),
        sa.Column('enterprise_id', sa.String(length=32), nullable=True),
        sa.Column('enterprise_name', sa.String(length=200), nullable=True),
        sa.Column('enterprise_url', sa.String(length=200), nullable=True),
        sa.Column('team_id', sa.String(length=32), nullable=True),
        sa.Column('team_name', sa.String(length=200), nullable=True),
        sa.Column('bot_token', sa.String(length=200), nullable=True),
        sa.Column('bot_id', sa.String(length=32), nullable=True),
        sa.Column('bot_user_id', sa.String(length=32), nullable=True),
        sa.Column('bot_scopes', sa.String(length=1000), nullable=True),
        sa.Column('bot_refresh_token', sa.String(length=200), nullable=True),
        sa.Column('bot_token_expires_at', sa.DateTime(), nullable=True),
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('user_token', sa.String(length=200), nullable=True),
        sa.Column('user_scopes', sa.String(length=1000), nullable=True),
        sa.Column('user_refresh_token', sa.String(length=200), nullable=True),
        sa.Column('user_token_expires_at', sa.DateTime(), nullable=True),
        sa.Column('incoming_webhook_url', sa.String(length=200), nullable=True),
        sa.Column('incoming_webhook_channel', sa.String(length=200), nullable=True),
        sa.Column('incoming_webhook_channel_id', sa.String(length=200), nullable=True),
        sa.Column('incoming_webhook_configuration_url', sa.String(length=200), nullable=True),
        sa.Column('is_enterprise_install', sa.Boolean(), nullable=False),
        sa.Column('token_type', sa.String(length=32), nullable=True),
        sa.Column('installed_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_installations')),
    )
    op.create_index('slack_installations_idx', 'slack_installations',
                    ['client_id', 'enterprise_id', 'team_id', 'user_id', 'installed_at'])
    op.create_table(
        'slack_bots',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('client_id', sa.String(length=32), nullable=False),
        sa.Column('app_id', sa.String(length=32), nullable=False),
        sa.Column('enterprise_id', sa.String(length=32), nullable=True),
        sa.Column('enterprise_name', sa.String(length=200), nullable=True),
        sa.Column('team_id', sa.String(length=32), nullable=True),
        sa.Column('team_name', sa.String(length=200), nullable=True),
        sa.Column('bot_token', sa.String(length=200), nullable=True),
        sa.Column('bot_id', sa.String(length=32), nullable=True),
        sa.Column('bot_user_id', sa.String(length=32), nullable=True),
        sa.Column('bot_scopes', sa.String(length=1000), nullable=True),
        sa.Column('bot_refresh_token', sa.String(length=200), nullable=True),
        sa.Column('bot_token_expires_at', sa.DateTime(), nullable=True),
        sa.Column('is_enterprise_install', sa.Boolean(), nullable=False),
        sa.Column('installed_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_bots')),
    )
    op.create_index('slack_bots_idx', 'slack_bots', ['client_id', 'enterprise_id', 'team_id', 'installed_at'])
    op.create_table(
        'slack_oauth_states',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('state', sa.String(length=200), nullable=False),
        sa.Column('expire_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_oauth_states')),
    )


def downgrade() -> None:
    op.drop_table('slack_oauth_states')
    op.drop_index('slack_bots_idx', table_name='slack_bots')
    op.drop_table('slack_bots')
    op.drop_index('slack_installations_idx', table_name='slack_installations')
    op.drop_table('slack_installations')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('blob_removed_at')
    op.drop_table('review_posts')
    op.drop_table('privacy_notices')
    op.drop_table('community_settings')
