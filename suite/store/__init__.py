"""The DuckDB results store: schema, writes in short transactions, migration of older files."""

from suite.store.errors import NewSchema, NotResultsFile, OldSchema, StoreError
from suite.store.schema import SCHEMA_VERSION
from suite.store.store import Store

__all__ = ["SCHEMA_VERSION", "NewSchema", "NotResultsFile", "OldSchema", "Store", "StoreError"]
