"""The DuckDB results store: schema, writes in short transactions, migration of older files."""

from suite.store.schema import SCHEMA_VERSION
from suite.store.store import OldSchema, Store, StoreError

__all__ = ["SCHEMA_VERSION", "OldSchema", "Store", "StoreError"]
