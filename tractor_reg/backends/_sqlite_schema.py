"""SQLite schema migrations: numbered SQL files applied forward-only, in one transaction.

The files live in ``tractor_reg/migrations/sqlite/`` as ``NNNN_description.sql``; the
schema version is SQLite's ``PRAGMA user_version``. These functions run on the asyncio
side of the bridge, on an ``aiosqlite`` connection opened in autocommit mode.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from importlib import resources

import aiosqlite

from .._exceptions import SchemaError, StoreBusy, StoreUnavailable

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: Tables a tractor_reg database may contain (besides SQLite's own).
OUR_TABLES = frozenset({"meta", "entries", "changes", "sqlite_sequence"})


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass
class MigrationReport:
    """What :func:`migrate` found and did."""

    path: str
    from_version: int
    to_version: int
    applied: list[str] = field(default_factory=list)
    dry_run: bool = False


def load_migrations() -> list[Migration]:
    """Every shipped migration in order; raises if the numbering has a gap."""
    found: list[Migration] = []
    package = resources.files("tractor_reg.migrations.sqlite")
    for item in package.iterdir():
        match = _NAME.match(item.name)
        if match:
            found.append(Migration(int(match.group(1)), item.name, item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"migration numbering has a gap: expected {expected:04d}, found {migration.name}"
            )
    return found


def latest_version() -> int:
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (comments and blanks dropped)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {current!r}")
    return statements


def translate(exc: BaseException, path: str) -> Exception:
    """A driver error as the matching TractorRegError (the cause stays chained)."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreBusy(f"{path}: the database stayed locked past the busy timeout ({text})")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "encrypted" in text
    ):
        return SchemaError(f"{path} is not a usable SQLite database: {text}")
    if isinstance(exc, sqlite3.OperationalError) and (
        "unable to open" in text or "readonly" in text or "disk" in text or "access" in text
    ):
        return StoreUnavailable(f"{path}: cannot open or write the database: {text}")
    if isinstance(exc, sqlite3.Error | OSError):
        return StoreUnavailable(f"{path}: SQLite error: {text}")
    return StoreUnavailable(f"{path}: unexpected error: {exc!r}")


async def inspect_schema(conn: aiosqlite.Connection, path: str) -> int:
    """The database's schema version; refuses (without writing) foreign or newer ones.

    Version and table list are read in one read transaction: another process's
    migration commits both together, so a reader never sees its tables without its
    version (which would look like another application's database).
    """
    own_txn = not conn.in_transaction
    if own_txn:
        await conn.execute("BEGIN")
    try:
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        async with conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ) as cur:
            tables = {str(r[0]) for r in await cur.fetchall()}
    finally:
        if own_txn:
            await conn.execute("COMMIT")
    version = int(row[0]) if row else 0
    latest = latest_version()
    if version > latest:
        raise SchemaError(
            f"{path} has schema version {version}, newer than this tractor_reg "
            f"(which knows up to {latest}); upgrade tractor_reg, the file was left untouched"
        )
    foreign = tables - OUR_TABLES
    if foreign or (version == 0 and tables):
        raise SchemaError(
            f"{path} belongs to another application (tables {sorted(tables)}, schema "
            f"version {version}); refusing to touch it"
        )
    return version


#: Lines of ``quick_check`` / ``integrity_check`` output kept for a message.
DAMAGE_LINES = 5


def damage_advice(path: str) -> str:
    """What an operator does with a file whose b-trees are damaged."""
    return (
        f"restore {path} from a backup, or copy what is readable into a new file with "
        f"`sqlite3 {path} .recover | sqlite3 NEW.db` and serve that"
    )


async def refuse_damaged(conn: aiosqlite.Connection, path: str, max_bytes: int) -> None:
    """Raise :class:`SchemaError` if ``PRAGMA quick_check`` finds the file damaged.

    Runs only for a database of at most ``max_bytes`` (pages in the file; 0: never):
    quick_check reads every page, about 2 ms per MiB when the file is in the page cache.
    """
    if max_bytes <= 0:
        return
    rows = await conn.execute_fetchall("PRAGMA page_count")
    pages = int(next(iter(rows))[0])
    rows = await conn.execute_fetchall("PRAGMA page_size")
    if pages * int(next(iter(rows))[0]) > max_bytes:
        return
    found = [str(r[0]) for r in await conn.execute_fetchall(f"PRAGMA quick_check({DAMAGE_LINES})")]
    if found != ["ok"]:
        raise SchemaError(
            f"{path} is damaged (PRAGMA quick_check: {'; '.join(found)}); refusing to use "
            f"it, nothing was written: {damage_advice(path)}"
        )


async def apply_migrations(
    conn: aiosqlite.Connection, path: str, *, dry_run: bool = False
) -> MigrationReport:
    """Bring the schema to the latest version in one IMMEDIATE transaction.

    Concurrent openers serialise on the write lock: the first applies each pending
    migration, the others then find nothing to do.
    """
    migrations = load_migrations()
    version = await inspect_schema(conn, path)
    report = MigrationReport(path, version, version, dry_run=dry_run)
    latest = migrations[-1].version
    if version == latest:
        return report
    if dry_run:
        report.applied = [m.name for m in migrations if m.version > version]
        report.to_version = latest
        return report
    await conn.execute("BEGIN IMMEDIATE")
    committed = False
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = await inspect_schema(conn, path)
        report.from_version = version
        for migration in migrations:
            if migration.version <= version:
                continue
            for statement in split_statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {migration.version:d}")
            report.applied.append(migration.name)
            report.to_version = migration.version
        await conn.execute("COMMIT")
        committed = True
    finally:
        if not committed:
            await conn.execute("ROLLBACK")
    return report
