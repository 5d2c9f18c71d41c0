"""Pluggable storage for the registrar's table.

Pick a backend by URL with :func:`open_backend` / :func:`opened_backend`; every backend
implements :class:`RegistryBackend`, whose contract is in :mod:`tractor_reg.backends._base`.
"""

from __future__ import annotations

from ._base import DEFAULT_CLOCK, AddrTuple, Change, Clock, Entry, RegistryBackend, Uid
from ._memory import MemoryBackend
from ._open import BACKENDS, ENTRY_POINT_GROUP, open_backend, opened_backend
from ._sqlite import SQLiteBackend, backup_sqlite, migrate_sqlite, parse_sqlite_url
from ._sqlite_schema import MigrationReport

__all__ = [
    "BACKENDS",
    "DEFAULT_CLOCK",
    "ENTRY_POINT_GROUP",
    "AddrTuple",
    "Change",
    "Clock",
    "Entry",
    "MemoryBackend",
    "MigrationReport",
    "RegistryBackend",
    "SQLiteBackend",
    "Uid",
    "backup_sqlite",
    "migrate_sqlite",
    "open_backend",
    "opened_backend",
    "parse_sqlite_url",
]
