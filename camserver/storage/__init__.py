"""storage.dir: the SQLite database every stage keeps its rows in, and its size budget."""

from .budget import StorageBudget, StorageKind, Usage
from .database import FILE, LEGACY_FILE, Database, StorageError, disk_full

__all__ = ["FILE", "LEGACY_FILE", "Database", "StorageBudget", "StorageError", "StorageKind", "Usage", "disk_full"]
