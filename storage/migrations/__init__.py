"""Alembic migration environment for storage.models (see env.py)."""
