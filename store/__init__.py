"""Storage through SQLAlchemy 2: SQLite (WAL) by default, any SQLAlchemy URL by configuration."""

from store.db import Store

__all__ = ["Store"]
