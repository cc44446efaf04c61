"""64-bit ids on Postgres, and one accepted correction per user and image held by the database (issue 22)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

1. The ids that grow without bound (captions, corrections and the correction's caption_id, training runs,
   model activations) become BIGINT on Postgres, and so do their sequences (a sequence created for a SERIAL
   stops at 2^31 - 1 whatever its column's type). SQLite's INTEGER PRIMARY KEY is 64-bit already: nothing
   changes there. On a populated database Postgres rewrites the tables, holding an exclusive lock meanwhile.
2. A partial unique index on corrections (image_sha256, platform, user_id) WHERE status = 'accepted'. The
   old code could leave two accepted corrections by one user on Postgres when they arrived at once: before
   the index is built, all but the newest (largest id) of each such group are marked overridden, as the
   code would have done had they arrived one after the other.

The downgrade drops the index and narrows the columns again (each sequence restarts after its table's largest
id); it fails while an id past 2^31 - 1 exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, whether a sequence numbers it)
WIDE_COLUMNS = (
    ('captions', 'id', True),
    ('corrections', 'id', True),
    ('corrections', 'caption_id', False),
    ('training_runs', 'id', True),
    ('model_activations', 'id', True),
)
ONE_ACCEPTED = 'uq_corrections_one_accepted'
ACCEPTED = sa.text("status = 'accepted'")


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        _set_id_type(sa.Integer(), sa.BigInteger(), 'bigint')
    _override_all_but_the_newest_accepted()
    with op.batch_alter_table('corrections', schema=None) as batch_op:
        batch_op.create_index(ONE_ACCEPTED, ['image_sha256', 'platform', 'user_id'], unique=True,
                              sqlite_where=ACCEPTED, postgresql_where=ACCEPTED)


def downgrade() -> None:
    with op.batch_alter_table('corrections', schema=None) as batch_op:
        batch_op.drop_index(ONE_ACCEPTED, sqlite_where=ACCEPTED, postgresql_where=ACCEPTED)
    if op.get_bind().dialect.name == 'postgresql':
        _set_id_type(sa.BigInteger(), sa.Integer(), 'integer')


def _set_id_type(old: sa.types.TypeEngine, new: sa.types.TypeEngine, sequence_type: str) -> None:
    for table, column, numbered in WIDE_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=old, type_=new, existing_nullable=False)
        if numbered:
            sequence = op.get_bind().scalar(sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
                                            {'table': table, 'column': column})
            if sequence_type == 'integer':  # the sequence may have gone past rows since deleted
                op.execute(f"SELECT setval('{sequence}', coalesce(max({column}), 1), max({column}) IS NOT NULL) "
                           f"FROM {table}")
            op.execute(f'ALTER SEQUENCE {sequence} AS {sequence_type}')


def _override_all_but_the_newest_accepted() -> None:
    newest = sa.text(
        "UPDATE corrections SET status = 'overridden', status_changed_at = :now "
        "WHERE status = 'accepted' AND id NOT IN ("
        "  SELECT max(id) FROM corrections WHERE status = 'accepted' GROUP BY image_sha256, platform, user_id)"
    ).bindparams(sa.bindparam('now', datetime.now(timezone.utc), type_=sa.DateTime(timezone=True)))
    op.execute(newest)
