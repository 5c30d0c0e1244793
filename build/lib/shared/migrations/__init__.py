"""Alembic migrations: schemas, roles and tables. Run as a deploy step, never at cold start."""
