"""training run status 'succeeded' is now 'promoted'

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A retraining run that promoted its version was 'succeeded' in the database and 'promoted' everywhere
else; one word per outcome now. The CHECK constraint is replaced (SQLite rebuilds the table in batch
mode) and existing rows are renamed; the downgrade renames them back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_CHECK = "status IN ('running', 'succeeded', 'failed', 'not_promoted')"
NEW_CHECK = "status IN ('running', 'promoted', 'failed', 'not_promoted')"


def _rename_status(old: str, new: str, check: str) -> None:
    # Drop the constraint first: the rows cannot take the new word while the old rule holds.
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_training_runs_status'), type_='check')
    runs = sa.table('training_runs', sa.column('status', sa.String(16)))
    op.execute(runs.update().where(runs.c.status == old).values(status=new))
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_training_runs_status'), sa.text(check))


def upgrade() -> None:
    _rename_status('succeeded', 'promoted', NEW_CHECK)


def downgrade() -> None:
    _rename_status('promoted', 'succeeded', OLD_CHECK)
