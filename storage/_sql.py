"""Small helpers shared by the storage modules (dialect-aware inserts, argument checks)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.errors import InvalidArgument
from storage.models import MAX_ROW_ID, PLATFORMS


def insert_ignoring_conflicts(session: Session, table: Any, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if a row was inserted, False if one already existed.

    Relying on the unique constraint (not check-then-insert) is what makes this safe when two
    transactions insert the same key at once: Postgres makes the second wait and then skip.
    """
    statement: Insert
    if session.get_bind().dialect.name == "postgresql":
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    # RETURNING tells inserted from skipped on both backends (psycopg's rowcount is not reliable here).
    first_key = list(table.primary_key.columns)[0]
    return session.execute(statement.returning(first_key)).first() is not None


def check_platform(platform: str) -> str:
    """Return `platform` if capbot knows it, else raise `InvalidArgument`."""
    if platform not in PLATFORMS:
        raise InvalidArgument(
            f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}", reason="bad_platform"
        )
    return platform


def is_row_id(value: object) -> bool:
    """Whether `value` can name a row: an int from 1 to 2^63 - 1. Ids from outside (a URL, a button's value)
    beyond that fit no column (SQLite raises OverflowError, Postgres an out-of-range error): they name
    nothing, so callers answer "unknown" without asking the database."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ROW_ID
