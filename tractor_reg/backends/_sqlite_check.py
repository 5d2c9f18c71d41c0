"""Checking a SQLite registry file, and taking its undecodable rows out of it.

Used by ``tractor-reg check`` (and ``check --repair``) with the plain ``sqlite3`` module:
these are one-shot commands, run beside registrars that may be writing to the file.

* :func:`open_read_only` opens a file without ever writing to it, including a file (and
  directory) this user may not write.
* :func:`scan` decodes every row of ``entries`` and ``changes`` exactly as a registrar
  would, and reports each one that fails (table, rowid, column, reason).
* :func:`damage` runs SQLite's own ``integrity_check`` (or ``quick_check``).
* :func:`repair` moves the rows that fail to a JSON-lines file and deletes them, in one
  write transaction, after an integrity check: good rows are never touched, and a file
  whose b-trees are damaged is refused.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .._exceptions import SchemaError, StoreUnavailable
from ._sqlite_rows import (
    CHANGE_COLUMNS,
    ENTRY_COLUMNS,
    BadText,
    RowError,
    change_from_row,
    entry_from_row,
    lenient_text,
)
from ._sqlite_schema import DAMAGE_LINES, OUR_TABLES, damage_advice, latest_version

#: Busy timeout of the tools' connections (seconds).
BUSY_TIMEOUT = 5.0


@dataclass(frozen=True)
class RowProblem:
    """A row a registrar skips: where it is, and what is wrong with it."""

    table: str
    rowid: int
    column: str
    reason: str
    #: The row's stored values by column name (bytes for text that is not UTF-8).
    values: dict[str, Any] = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"table {self.table} rowid {self.rowid} column {self.column}: {self.reason}"

    def doc(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rowid": self.rowid,
            "column": self.column,
            "reason": self.reason,
        }


@dataclass
class ScanResult:
    live: int = 0
    expired: int = 0
    bad: list[RowProblem] = field(default_factory=list)


def _uri(path: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(os.path.abspath(path))}?{query}"


def open_read_only(path: str) -> tuple[sqlite3.Connection, bool]:
    """A connection that cannot write ``path``, and whether it reads the file as immutable.

    ``mode=ro`` first. A WAL database whose ``-wal``/``-shm`` files do not exist needs to
    create them even to read, which a read-only directory or file forbids; no ``-wal``
    file also means no connection has the file open in WAL mode (the first one creates
    it), so it is then read as ``immutable``: as it is on disk, without shared memory.
    Raises :class:`sqlite3.Error` when neither works.
    """
    conn = sqlite3.connect(_uri(path, mode="ro"), uri=True, timeout=BUSY_TIMEOUT)
    try:
        conn.execute("PRAGMA user_version").fetchone()
        return conn, False
    except sqlite3.OperationalError as exc:
        conn.close()
        code = exc.sqlite_errorcode & 0xFF
        if code not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            raise
        if os.path.exists(path + "-wal"):
            raise
    conn = sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True)
    conn.execute("PRAGMA user_version").fetchone()
    return conn, True


def schema_problem(conn: sqlite3.Connection, path: str) -> tuple[int, str | None]:
    """The schema version, and why this is not a tractor_reg file this code can use (or
    None)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = tables_of(conn)
    latest = latest_version()
    if version > latest:
        return version, f"schema version {version} is newer than this tractor_reg knows ({latest})"
    if tables - OUR_TABLES or (version == 0 and tables):
        return version, f"{path} belongs to another application (tables {sorted(tables)})"
    return version, None


def damage(conn: sqlite3.Connection, *, quick: bool = False) -> list[str]:
    """SQLite's ``integrity_check`` (``quick_check`` if ``quick``): ``[]`` when the file
    is sound, else the first lines it reported."""
    pragma = "quick_check" if quick else "integrity_check"
    try:
        found = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}({DAMAGE_LINES})")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if found == ["ok"] else found


_ENTRY_NAMES = [c.strip() for c in ENTRY_COLUMNS.split(",")]
_CHANGE_NAMES = [c.strip() for c in CHANGE_COLUMNS.split(",")]


def scan(conn: sqlite3.Connection, tables: set[str], now: float) -> ScanResult:
    """Decode every row of ``entries`` and ``changes`` (those of ``tables`` that exist)
    as a registrar does; count live and expired entries, report every row that fails."""
    conn.text_factory = lenient_text
    result = ScanResult()
    if "entries" in tables:
        owner = _owner_column(conn, "entries")
        query = f"SELECT {ENTRY_COLUMNS}, {owner}, rowid FROM entries ORDER BY rowid"
        # address -> (revision, rowid, uid, values) of the newest row holding it
        holders: dict[Any, tuple[int, Any, Any, dict[str, Any]]] = {}
        for row in conn.execute(query):
            values = dict(zip([*_ENTRY_NAMES, "owner"], row[:8], strict=True))
            try:
                entry = entry_from_row(row, row[7])
            except RowError as exc:
                result.bad.append(RowProblem("entries", row[8], exc.column, exc.reason, values))
                continue
            if entry.expires_at <= now:
                result.expired += 1
            else:
                result.live += 1
            for addr in entry.addrs:
                mine = (entry.revision, row[8], entry.uid, values)
                other = holders.setdefault(addr, mine)
                if other is mine:
                    continue
                older, newer = sorted((other, mine), key=lambda h: (h[0], h[1]))
                holders[addr] = newer
                # An address belongs to one uid: registrars give it to the newest holder.
                result.bad.append(
                    RowProblem(
                        "entries",
                        older[1],
                        "addrs",
                        f"address {list(addr)} is also held by the newer {newer[2]} "
                        f"(rowid {newer[1]})",
                        older[3],
                    )
                )
    if "changes" in tables:
        owner = _owner_column(conn, "changes")
        query = f"SELECT {CHANGE_COLUMNS}, {owner} FROM changes ORDER BY seq"
        for row in conn.execute(query):
            try:
                change_from_row(row)
            except RowError as exc:
                values = dict(zip([*_CHANGE_NAMES, "owner"], row, strict=True))
                result.bad.append(RowProblem("changes", row[0], exc.column, exc.reason, values))
    return result


def _owner_column(conn: sqlite3.Connection, table: str) -> str:
    """``owner`` if ``table`` has that column (schema version 3 on), else ``NULL``."""
    columns = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
    return "owner" if "owner" in columns else "NULL"


def tables_of(conn: sqlite3.Connection) -> set[str]:
    return {
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }


# -- repair -------------------------------------------------------------------------------


@dataclass
class RepairReport:
    path: str
    removed: list[RowProblem]
    #: Where the removed rows were written (None when there was nothing to remove).
    quarantine: str | None


def _json_value(value: object) -> Any:
    """A stored value as JSON that keeps it exactly: text that is not UTF-8 (or a blob)
    as ``{"hex": ...}``, a non-finite real as ``{"real": "inf"}``."""
    if isinstance(value, bytes):  # BadText too
        kind = "text_hex" if isinstance(value, BadText) else "blob_hex"
        return {kind: bytes(value).hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"real": repr(value)}
    return value


def quarantine_path(path: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{path}.quarantine-{stamp}.jsonl"


def repair(path: str, quarantine: str | None = None) -> RepairReport:
    """Move every row that cannot be decoded out of ``path`` into a JSON-lines file.

    In one ``BEGIN IMMEDIATE`` transaction: scan both tables, write each bad row (table,
    rowid, column, reason, its stored values) to ``quarantine`` (default: next to the
    database, ``<file>.quarantine-<UTC time>.jsonl``, created owner-only, never
    overwritten) and fsync it, delete exactly those rowids, commit. Registrars skip
    these rows already, so their views do not change. Raises :class:`SchemaError` for a
    file that is not a usable tractor_reg database or whose b-trees are damaged (that is
    for a backup or ``.recover``, not for deleting rows).
    """
    if not os.path.exists(path):
        raise StoreUnavailable(f"no database at {path}")
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    written: str | None = None
    try:
        _, problem = schema_problem(conn, path)
        if problem:
            raise SchemaError(f"refusing to repair: {problem}")
        found = damage(conn)
        if found:
            raise SchemaError(
                f"refusing to repair {path}: it is damaged (PRAGMA integrity_check: "
                f"{'; '.join(found)}); deleting rows cannot fix that: {damage_advice(path)}"
            )
        conn.execute("BEGIN IMMEDIATE")
        committed = False
        try:
            bad = scan(conn, tables_of(conn), time.time()).bad
            if bad:
                target = quarantine or quarantine_path(path)
                _write_quarantine(target, path, bad)
                written = target
                for problem_row in bad:
                    conn.execute(
                        f"DELETE FROM {problem_row.table} WHERE rowid = ?", (problem_row.rowid,)
                    )
            conn.execute("COMMIT")
            committed = True
        finally:
            if not committed:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if written is not None:
                    os.unlink(written)  # the rows it lists are still in the database
        return RepairReport(path, bad, written)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"{path}: repair failed, nothing was changed: {exc}") from exc
    finally:
        conn.close()


def _write_quarantine(target: str, path: str, bad: list[RowProblem]) -> None:
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the quarantine file {target}: {exc.strerror or exc}; "
            "nothing was changed"
        ) from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for row in bad:
            doc = {
                "database": path,
                **row.doc(),
                "values": {k: _json_value(v) for k, v in row.values.items()},
            }
            out.write(json.dumps(doc, allow_nan=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
