"""corrections carry their kind: a correction, or a confirmation that the caption is right

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

`corrections.kind` is 'correction' (a better text, every row stored before this revision) or
'confirmation' (a user said the caption is right; the row's text is the caption's own). Batch mode so
SQLite rebuilds the table and Postgres alters it in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('corrections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default=sa.text("'correction'"),
                                      nullable=False))
        batch_op.create_check_constraint(op.f('ck_corrections_kind'), sa.text("kind IN ('correction', 'confirmation')"))


def downgrade() -> None:
    # Confirmations have no meaning without their kind: they would read as corrections equal to the caption.
    op.execute("DELETE FROM corrections WHERE kind = 'confirmation'")
    with op.batch_alter_table('corrections', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_corrections_kind'), type_='check')
        batch_op.drop_column('kind')
