"""captions carry their confidence and alternatives

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

`captions.confidence` (0..1, NULL for captions stored before this revision or by a captioner that gives
none) and `captions.alternatives` (a JSON list of the other captions offered, [] when none). Batch mode so
SQLite rebuilds the table and Postgres alters it in place; existing rows get NULL and [].
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('captions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confidence', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('alternatives', sa.JSON(), server_default=sa.text("'[]'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('captions', schema=None) as batch_op:
        batch_op.drop_column('alternatives')
        batch_op.drop_column('confidence')
