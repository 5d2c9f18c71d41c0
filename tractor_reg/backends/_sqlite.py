"""``sqlite://`` — a durable registry in one SQLite file, shareable by several processes.

Design:

* **Reads never touch the database.** Every lookup is answered from an in-memory view
  (a :class:`MemoryBackend` used as a replica). The view only ever holds committed rows.
* **The change log keeps views coherent.** Every commit appends the new state of each
  changed row to the ``changes`` table in the same transaction. A process catches up by
  replaying the rows after the last one it saw: before each of its own writes (under
  the write lock, so its view is exact when it plans) and every ``poll_interval``
  seconds in :meth:`SQLiteBackend.run` (so other processes' writes become visible, and
  wake ``wait_changed``, within that delay).
* **Group commit.** Concurrent writes queue up; the first writer becomes the leader and
  commits everything queued in one ``BEGIN IMMEDIATE`` transaction, with one round trip
  over the asyncio bridge to plan and one to write. Every caller is answered only after
  that transaction committed.
* **The semantics are the memory backend's.** Under the write lock the leader seeds a
  scratch :class:`MemoryBackend` with the rows the batch touches, runs the operations
  on it, and writes the difference. There is no second implementation of the rules.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosqlite
import msgspec
import trio

from .._aio import AsyncioThread
from .._exceptions import (
    BackendClosed,
    BackendError,
    BackendURLError,
    StoreUnavailable,
    TractorRegError,
)
from ._base import DEFAULT_CLOCK, Clock, Entry, Uid
from ._open import positive_option, retention_option
from ._replica import (
    BadRow,
    HistoryRow,
    Op,
    Plan,
    ReplicatedBackend,
    Unreadable,
    build_history,
    change_for,
    one_holder_per_address,
    plan_batch,
)
from ._sqlite_rows import (
    ENTRY_COLUMNS,
    OWNED_CHANGE_COLUMNS,
    OWNED_ENTRY_COLUMNS,
    RowError,
    change_from_row,
    entry_from_row,
    history_row,
    lenient_text,
    shown,
    undecodable_text,
)
from ._sqlite_schema import (
    MigrationReport,
    apply_migrations,
    inspect_schema,
    latest_version,
    load_migrations,
    refuse_damaged,
    translate,
)

log = logging.getLogger("tractor_reg.backends.sqlite")

T = TypeVar("T")

SYNC_LEVELS = ("normal", "full")
DEFAULT_SYNCHRONOUS = "full"
DEFAULT_BUSY_TIMEOUT = 5.0
DEFAULT_POLL_INTERVAL = 0.1
#: Change-log rows kept; a process that falls further behind reloads the whole table.
DEFAULT_CHANGE_RETENTION = 100_000
#: Files up to this size (MiB) get ``PRAGMA quick_check`` at every open (0: never).
DEFAULT_QUICK_CHECK_MAX_MB = 256

_ENTRY_COLUMNS = ENTRY_COLUMNS
#: The columns the backend reads and writes (``owner`` exists from schema version 3;
#: ``_ENTRY_COLUMNS`` alone reads a file of any version).
_OWNED_COLUMNS = OWNED_ENTRY_COLUMNS
#: What an INSERT INTO entries does with a uid already stored.
_ENTRY_UPSERT = (
    "ON CONFLICT (name, uuid) DO UPDATE SET addrs = excluded.addrs, "
    "revision = excluded.revision, registered_at = excluded.registered_at, "
    "expires_at = excluded.expires_at, registrar = excluded.registrar, "
    "owner = excluded.owner"
)


# -- URL --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SQLiteOptions:
    path: str
    synchronous: str = DEFAULT_SYNCHRONOUS
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    change_retention: int = DEFAULT_CHANGE_RETENTION
    quick_check_max_mb: int = DEFAULT_QUICK_CHECK_MAX_MB


def parse_sqlite_url(url: str) -> SQLiteOptions:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` plus options.

    Options (query string): ``synchronous=normal|full`` (default full),
    ``busy_timeout=SECONDS`` (default 5), ``poll_interval=SECONDS`` (default 0.1),
    ``change_retention=ROWS`` (default 100000), ``quick_check_max_mb=MIB`` (default 256;
    0 turns the damage check at open off).
    """
    if not isinstance(url, str):
        raise BackendURLError(f"backend URL must be a str, got {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise BackendURLError(f"malformed backend URL {url!r}: {exc}") from exc
    if parts.scheme.lower() != "sqlite":
        raise BackendURLError(f"not a sqlite:// URL: {url!r}")
    if parts.netloc:
        raise BackendURLError(
            f"sqlite URLs have no host: use sqlite:///relative.db or sqlite:////abs/path.db, "
            f"got {url!r}"
        )
    if parts.fragment:
        raise BackendURLError(f"sqlite URL {url!r} must not have a fragment")
    raw_path = unquote(parts.path)
    if not raw_path.startswith("/") or raw_path in ("/", "//"):
        raise BackendURLError(f"sqlite URL {url!r} names no database file")
    path = raw_path[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
    if path.endswith("/") or path == ":memory:":
        raise BackendURLError(f"sqlite URL {url!r} must name a database file")
    opts: dict[str, Any] = {}
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise BackendURLError(f"malformed options in {url!r}: {exc}") from exc
    for key, value in query:
        if key in opts:
            raise BackendURLError(f"option {key!r} given twice in {url!r}")
        if key == "synchronous":
            if value.lower() not in SYNC_LEVELS:
                raise BackendURLError(
                    f"synchronous={value!r} in {url!r}; expected one of {', '.join(SYNC_LEVELS)}"
                )
            opts[key] = value.lower()
        elif key in ("busy_timeout", "poll_interval"):
            opts[key] = positive_option(key, value)
        elif key == "change_retention":
            opts[key] = retention_option(key, value)
        elif key == "quick_check_max_mb":
            if not value.isdigit():
                raise BackendURLError(f"{key}={value!r} must be an integer >= 0")
            opts[key] = int(value)
        else:
            raise BackendURLError(
                f"unknown sqlite option {key!r} in {url!r}; known: synchronous, busy_timeout, "
                "poll_interval, change_retention, quick_check_max_mb"
            )
    return SQLiteOptions(path=path, **opts)


# -- rows -------------------------------------------------------------------------------


def _addrs_json(entry: Entry) -> str:
    # Compact JSON arrays, e.g. [["127.0.0.1",1616]]
    return msgspec.json.encode(entry.addrs).decode()


# -- asyncio side (runs in the bridge thread) --------------------------------------------


#: Change rows loaded as the view's history when the table is (re)loaded.
_HISTORY_ROWS = 10_000
#: Rows per page of a snapshot: a cold start holds one page of raw rows at a time.
_SNAPSHOT_PAGE = 4096


@dataclass
class _Snapshot:
    """An open read snapshot: the store revision, the change-log position, and a cursor
    over every entry in revision order (read page by page, then closed)."""

    revision: int
    seq: int
    cursor: aiosqlite.Cursor
    own_txn: bool


@dataclass
class _Delta:
    """Change-log rows after a given seq (or a marker that they were pruned)."""

    gap: bool
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: The store revision (it can move without change rows: writes that cancelled out).
    revision: int = 0


async def _close(conn: aiosqlite.Connection) -> None:
    """Close the connection and join aiosqlite's worker thread.

    ``close()`` returns once the worker *answered* the stop request; joining makes
    "closed" mean no thread is left behind.
    """
    await conn.close()
    worker = getattr(conn, "_thread", None)
    if worker is not None and worker.is_alive():
        worker.join(timeout=5)


async def _connect(path: str, busy_timeout: float) -> aiosqlite.Connection:
    pending = aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    connected = False
    try:
        conn = await pending
        connected = True
    finally:
        if not connected:
            # aiosqlite only queues its worker's stop when the connect fails: join it,
            # so a failed open leaves no thread behind.
            worker = getattr(pending, "_thread", None)
            if worker is not None and worker.is_alive():
                worker.join(timeout=5)
    return conn


async def _setup(conn: aiosqlite.Connection, path: str, opts: SQLiteOptions) -> MigrationReport:
    # Inspect before any write so a foreign, newer or damaged database is left
    # byte-for-byte alone.
    await inspect_schema(conn, path)
    await conn.execute(f"PRAGMA busy_timeout = {int(opts.busy_timeout * 1000)}")
    await refuse_damaged(conn, path, opts.quick_check_max_mb * 1024 * 1024)
    # Switching to WAL needs a moment of exclusive access and SQLite answers BUSY at once
    # instead of using the busy handler: retry until busy_timeout like any other lock.
    deadline = asyncio.get_running_loop().time() + opts.busy_timeout
    delay = 0.005
    while True:
        try:
            async with conn.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
    if not row or str(row[0]).lower() != "wal":
        raise StoreUnavailable(f"{path}: could not switch to WAL mode (got {row!r})")
    await conn.execute(f"PRAGMA synchronous = {opts.synchronous.upper()}")
    report = await apply_migrations(conn, path)
    # The guard of one-script writes (_write_script). A TEMP table lives in this
    # connection's own temporary database: the file, other processes and tools never see it.
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_GUARD_TABLE.split('.')[1]} "
        "(current INTEGER NOT NULL CHECK (current))"
    )
    return report


#: SQLite's names of its text encodings, as Python codecs.
_CODECS = {"utf-8": "utf-8", "utf-16le": "utf-16-le", "utf-16be": "utf-16-be"}


async def _text_encoding(conn: aiosqlite.Connection) -> str:
    """The Python codec of the database's text encoding (a file someone created as
    UTF-16 stays UTF-16): one-script writes send text in it."""
    row = next(iter(await conn.execute_fetchall("PRAGMA encoding")), None)
    name = str(row[0]).lower() if row else "utf-8"
    return _CODECS.get(name, "utf-8")


async def _snapshot_open(conn: aiosqlite.Connection, own_txn: bool) -> _Snapshot:
    """Start reading every row, with the revision and change-log position of the same
    read snapshot, in a read transaction of its own if ``own_txn``; else inside the
    caller's (a writer that fell behind the pruned log). Close it with
    :func:`_snapshot_close`.
    """
    if own_txn:
        await conn.execute("BEGIN")
    opened = False
    try:
        revision, seq, _ = await _head(conn)
        # owner eighth, rowid last: the decoder takes the first seven columns and the
        # owner, a skipped row is named by the rowid
        cursor = await conn.execute(
            f"SELECT {_OWNED_COLUMNS}, rowid FROM entries ORDER BY revision"
        )
        opened = True
    finally:
        if own_txn and not opened:
            await conn.execute("COMMIT")
    return _Snapshot(revision, seq, cursor, own_txn)


async def _end_read(conn: aiosqlite.Connection) -> None:
    """End a read transaction a cancelled :func:`_snapshot_open` may have begun: its
    BEGIN can still run after the caller stopped waiting, so roll back in any case (in
    queue order, after it), and take "no transaction" as done."""
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "no transaction" not in str(exc):
            raise


async def _snapshot_page(snap: _Snapshot) -> list[tuple[Any, ...]]:
    # The connection has no row factory: the rows are plain tuples.
    return cast(list[tuple[Any, ...]], list(await snap.cursor.fetchmany(_SNAPSHOT_PAGE)))


async def _snapshot_close(conn: aiosqlite.Connection, snap: _Snapshot) -> None:
    try:
        await snap.cursor.close()
    finally:
        if snap.own_txn and conn.in_transaction:
            await conn.execute("COMMIT")


_HEAD_SQL = (
    "SELECT (SELECT value FROM meta WHERE key = 'revision'), "
    "(SELECT COALESCE(MAX(seq), 0) FROM changes), (SELECT MIN(seq) FROM changes)"
)


async def _head(conn: aiosqlite.Connection) -> tuple[int, int, int | None]:
    """(store revision, last change seq, first retained change seq or None)."""
    row = next(iter(await conn.execute_fetchall(_HEAD_SQL)), None)
    if row is None:
        return 0, 0, None
    return int(row[0] or 0), int(row[1] or 0), None if row[2] is None else int(row[2])


async def _history_rows(conn: aiosqlite.Connection, upto_seq: int, limit: int) -> list[Any]:
    """The newest ``limit`` change rows up to ``upto_seq``, oldest first."""
    rows = await _fetch_all(
        conn,
        f"SELECT {OWNED_CHANGE_COLUMNS} FROM changes WHERE seq <= ? ORDER BY seq DESC LIMIT ?",
        (upto_seq, limit),
    )
    rows.reverse()
    return rows


async def _fetch_all(
    conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """Every row of a query; text that is not UTF-8 switches the connection to lenient
    reading (:func:`_use_lenient_text`) and the query runs again."""
    try:
        rows = await conn.execute_fetchall(sql, params)
    except sqlite3.OperationalError as exc:
        if not undecodable_text(exc) or conn.text_factory is lenient_text:
            raise
        await _use_lenient_text(conn)
        rows = await conn.execute_fetchall(sql, params)
    return [tuple(r) for r in rows]


def _bad_entry(row: Sequence[Any], exc: RowError) -> BadRow:
    """A skipped ``entries`` row, named by its rowid (the snapshot's last column)."""
    return BadRow(
        "entry", "entries", f"rowid {row[-1]} uid ({shown(row[0])}, {shown(row[1])})", str(exc)
    )


def _bad_change(row: Sequence[Any], exc: RowError) -> BadRow:
    """A skipped ``changes`` row, named by its seq (the rowid)."""
    return BadRow(
        "change", "changes", f"seq {row[0]} uid ({shown(row[3])}, {shown(row[4])})", str(exc)
    )


async def _use_lenient_text(conn: aiosqlite.Connection) -> None:
    """Read text that is not UTF-8 as :class:`BadText` on this connection from now on:
    the rows holding it are then skipped one by one instead of failing every read."""
    conn.text_factory = lenient_text


async def _changes_since(conn: aiosqlite.Connection, seq: int) -> _Delta:
    # Every statement is a round trip to aiosqlite's thread: look at the head first,
    # since usually (always, with one registrar on the file) nothing new was committed.
    revision, top, first = await _head(conn)
    if top <= seq:
        return _Delta(gap=False, revision=revision)
    if first is not None and first > seq + 1:
        # Rows we never saw were pruned: the caller reloads, so fetching the rest of
        # the log would be wasted (each row fetched costs a GIL hand-over to this thread).
        return _Delta(gap=True)
    rows = await _fetch_all(
        conn,
        f"SELECT {OWNED_CHANGE_COLUMNS} FROM changes WHERE seq > ? ORDER BY seq",
        (seq,),
    )
    if not rows or rows[0][0] != seq + 1:
        # Rows we never saw were pruned (or a seq was skipped by a rolled back insert):
        # tell the caller whether the log still covers everything after `seq`.
        low = next(iter(await conn.execute_fetchall("SELECT MIN(seq) FROM changes")), None)
        if low is None or low[0] is None or int(low[0]) > seq + 1:
            return _Delta(gap=True)
    return _Delta(gap=False, rows=rows, revision=revision)


async def _begin_write(conn: aiosqlite.Connection, seq: int) -> _Delta:
    await conn.execute("BEGIN IMMEDIATE")
    delta: _Delta | None = None
    try:
        delta = await _changes_since(conn, seq)
    finally:
        if delta is None:  # failed or cancelled: release the write lock
            await conn.execute("ROLLBACK")
    return delta


async def _rollback(conn: aiosqlite.Connection) -> None:
    if conn.in_transaction:
        await conn.execute("ROLLBACK")


_LOG_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: SQLite allows 32,766 bound values per statement; a change row takes 12.
_LOG_ROWS_PER_STATEMENT = 2_000


@dataclass
class _Write:
    revision: int
    upserts: list[tuple[Entry, str]]
    deletes: list[tuple[Uid, str]]
    now: float
    prune_below: int | None
    #: Per delete, the addresses the uid had (JSON), kept in its change row for history.
    deleted_addrs: list[str | None]

    @functools.cached_property
    def addrs_text(self) -> list[str]:
        """Each upsert's addresses as the JSON text stored in both tables."""
        return [_addrs_json(e) for e, _ in self.upserts]

    def entry_rows(self) -> list[tuple[Any, ...]]:
        """The ``entries`` rows of the upserts, in ``_OWNED_COLUMNS`` order."""
        return [
            (e.name, e.uuid, text, e.revision, e.registered_at, e.expires_at, e.registrar, e.owner)
            for (e, _), text in zip(self.upserts, self.addrs_text, strict=True)
        ]

    def log_rows(self) -> list[tuple[Any, ...]]:
        """The change rows (without seq and committed_at): deletions, then upserts."""
        return [
            (self.revision, "delete", uid[0], uid[1], text, None, None, None, None, reason, None)
            for (uid, reason), text in zip(self.deletes, self.deleted_addrs, strict=True)
        ] + [
            (
                self.revision,
                "upsert",
                e.name,
                e.uuid,
                text,
                e.revision,
                e.registered_at,
                e.expires_at,
                e.registrar,
                reason,
                e.owner,
            )
            for (e, reason), text in zip(self.upserts, self.addrs_text, strict=True)
        ]


async def _write_commit(conn: aiosqlite.Connection, write: _Write) -> int:
    """Apply the planned rows and log them, commit, and return the last change seq."""
    committed = False
    try:
        if write.deletes:
            await conn.executemany(
                "DELETE FROM entries WHERE name = ? AND uuid = ?",
                [(uid[0], uid[1]) for uid, _ in write.deletes],
            )
        if write.upserts:
            await conn.executemany(
                f"INSERT INTO entries ({_OWNED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                + _ENTRY_UPSERT,
                write.entry_rows(),
            )
        log_rows = write.log_rows()
        last_seq = 0
        # One multi-row INSERT ... RETURNING per chunk gives the new seqs in the same round
        # trip to aiosqlite's thread (a separate SELECT MAX(seq) would cost another).
        for at in range(0, len(log_rows), _LOG_ROWS_PER_STATEMENT):
            chunk = log_rows[at : at + _LOG_ROWS_PER_STATEMENT]
            params = [value for log_row in chunk for value in (*log_row, write.now)]
            returned = await conn.execute_fetchall(
                "INSERT INTO changes (store_revision, kind, name, uuid, addrs, revision, "
                "registered_at, expires_at, registrar, reason, owner, committed_at) VALUES "
                + ",".join([_LOG_ROW_PLACEHOLDERS] * len(chunk))
                + " RETURNING seq",
                params,
            )
            last_seq = max([last_seq, *(int(r[0]) for r in returned)])
        await conn.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (write.revision,))
        if write.prune_below is not None:
            await conn.execute("DELETE FROM changes WHERE seq < ?", (write.prune_below,))
        if not log_rows:
            _, last_seq, _ = await _head(conn)
        await conn.execute("COMMIT")
        committed = True
    finally:
        if not committed:  # failed or cancelled: release the write lock
            await _rollback(conn)
    return last_seq


_GUARD_TABLE = "temp.tractor_reg_guard"


class _NoLiteral(Exception):
    """A value a script cannot carry exactly: that write takes the parameter path."""


#: Largest power-of-two denominator written as an integer literal (fits in int64).
_MAX_DENOMINATOR = 1 << 62


def _sql_literal(value: object, encoding: str) -> str:
    """``value`` as an SQL literal that SQLite reads back as exactly the same value.

    Text goes as a hex blob (in the database's text encoding) cast to TEXT, so no string
    (quotes, NULs, anything) can end the literal early. A float goes as an exact
    fraction: SQLite's decimal parser is not correctly rounded, so ``repr()`` could come
    back one unit in the last place off. Only the built-in types' own methods are used,
    so a subclass cannot change what is written.
    """
    if value is None:
        return "NULL"
    if type(value) is bytes:
        return "X'" + value.hex() + "'"
    if isinstance(value, str):
        try:
            data = str.encode(value, encoding)
        except UnicodeEncodeError as exc:
            raise _NoLiteral(str(exc)) from exc
        return "CAST(X'" + data.hex() + "' AS TEXT)"
    if isinstance(value, bool):
        raise _NoLiteral(f"no SQL literal for {value!r}")
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and math.isfinite(value):
        num, den = float.as_integer_ratio(value)
        if num == 0 and math.copysign(1.0, value) < 0:
            raise _NoLiteral("negative zero")
        # num fits in 53 bits unless den == 1; CAST of an integer the double holds
        # exactly, then a division by a power of two, are both exact.
        if abs(num) >= 1 << 63 or den > _MAX_DENOMINATOR:
            raise _NoLiteral(f"no exact SQL literal for {value!r}")
        if den == 1:
            return f"CAST({num} AS REAL)"
        return f"(CAST({num} AS REAL) / {den})"
    raise _NoLiteral(f"no SQL literal for {value!r}")


def _rows_sql(rows: Sequence[Sequence[object]], encoding: str) -> str:
    return ",".join(
        "(" + ",".join(_sql_literal(value, encoding) for value in row) + ")" for row in rows
    )


def _write_script(
    seq: int, revision: int, write: _Write, encoding: str = "utf-8"
) -> tuple[str, int]:
    """One SQL script that commits ``write`` only if the store is still at (``revision``,
    change ``seq``); and the last change seq it writes.

    The guard row violates its CHECK when another process committed since (or the
    change counter moved past ``seq`` some other way): the script stops there, inside
    its transaction, with an IntegrityError. Raises :class:`_NoLiteral` for a value a
    script cannot carry exactly.
    """
    log_rows = write.log_rows()
    # Explicit seqs: the change rows are numbered right after the last one we know.
    numbered = [(seq + i, *row, write.now) for i, row in enumerate(log_rows, 1)]
    parts = [
        "BEGIN IMMEDIATE",
        f"INSERT INTO {_GUARD_TABLE} (current) SELECT "
        f"(SELECT COALESCE(MAX(seq), 0) FROM main.changes) = {int(seq)} AND "
        # AUTOINCREMENT's own counter too: a number it handed out is never reused.
        "(SELECT COALESCE(MAX(seq), 0) FROM main.sqlite_sequence WHERE name = 'changes') "
        f"= {int(seq)} AND "
        f"(SELECT value FROM main.meta WHERE key = 'revision') = {int(revision)}",
        f"DELETE FROM {_GUARD_TABLE}",
    ]
    if write.deletes:
        parts += [
            f"DELETE FROM entries WHERE name = {_sql_literal(uid[0], encoding)} "
            f"AND uuid = {_sql_literal(uid[1], encoding)}"
            for uid, _ in write.deletes
        ]
    if write.upserts:
        parts.append(
            f"INSERT INTO entries ({_OWNED_COLUMNS}) VALUES "
            + _rows_sql(write.entry_rows(), encoding)
            + " "
            + _ENTRY_UPSERT
        )
    if numbered:
        parts.append(
            "INSERT INTO changes (seq, store_revision, kind, name, uuid, addrs, revision, "
            "registered_at, expires_at, registrar, reason, owner, committed_at) VALUES "
            + _rows_sql(numbered, encoding)
        )
    parts.append(f"UPDATE meta SET value = {int(write.revision)} WHERE key = 'revision'")
    if write.prune_below is not None:
        parts.append(f"DELETE FROM changes WHERE seq < {int(write.prune_below)}")
    parts.append("COMMIT")
    return ";\n".join(parts) + ";", seq + len(numbered)


async def _commit_if_current(
    conn: aiosqlite.Connection, seq: int, revision: int, write: _Write, encoding: str
) -> int | None:
    """Commit ``write`` if the store is still at (``revision``, change ``seq``), the state
    it was planned against, and return the new last change seq; else change nothing and
    return ``None``.

    With one registrar on the file this is every write: one trip across the bridge and
    one to aiosqlite's thread, where statement by statement would take six.
    """
    try:
        script, last_seq = _write_script(seq, revision, write, encoding)
    except _NoLiteral:
        return None  # nothing started: the parameter path writes it
    done = False
    try:
        await conn.executescript(script)
        done = True
    except sqlite3.IntegrityError:
        return None  # the store moved on (or a hand-edited row clashes): take the slow path
    finally:
        if not done:  # release the write lock
            await _rollback(conn)
    return last_seq


async def _commit_empty(conn: aiosqlite.Connection) -> None:
    await conn.execute("COMMIT")


# -- trio side ---------------------------------------------------------------------------


class SQLiteBackend(ReplicatedBackend):
    """:class:`~tractor_reg.backends.RegistryBackend` stored in a SQLite file (WAL).

    Writes are committed (with the configured ``synchronous`` level) before they return;
    reads are answered from memory. Several processes may open the same file.
    Call :meth:`run` in a nursery while the backend is open to see other processes'
    writes within ``poll_interval`` seconds (``opened_backend`` does this for you).
    """

    scheme: str = "sqlite"
    _log = log

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = DEFAULT_SYNCHRONOUS,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        change_retention: int = DEFAULT_CHANGE_RETENTION,
        quick_check_max_mb: int = DEFAULT_QUICK_CHECK_MAX_MB,
        clock: Clock = DEFAULT_CLOCK,
    ) -> None:
        if synchronous not in SYNC_LEVELS:
            raise ValueError(f"synchronous must be one of {SYNC_LEVELS}, got {synchronous!r}")
        self.options = SQLiteOptions(
            path=path,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            poll_interval=poll_interval,
            change_retention=change_retention,
            quick_check_max_mb=quick_check_max_mb,
        )
        super().__init__(clock=clock)
        self.path = path
        self._bridge = AsyncioThread(f"tractor_reg-sqlite:{os.path.basename(path)}")
        self._conn: aiosqlite.Connection | None = None
        self._seq = 0
        self._sync_lock = trio.Lock()
        self._commits = 0
        self._encoding = "utf-8"

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = DEFAULT_CLOCK) -> Self:
        opts = parse_sqlite_url(url)
        return cls(
            opts.path,
            synchronous=opts.synchronous,
            busy_timeout=opts.busy_timeout,
            poll_interval=opts.poll_interval,
            change_retention=opts.change_retention,
            quick_check_max_mb=opts.quick_check_max_mb,
            clock=clock,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return f"<SQLiteBackend {self.path!r} {state} synchronous={self.options.synchronous}>"

    # -- lifecycle ---------------------------------------------------------------------

    def _prepare_path(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
            if not os.path.exists(self.path):
                # Owner-only from birth; SQLite gives its -wal/-shm files the same mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the database at {self.path}: {exc}") from exc
        if not os.access(self.path, os.R_OK | os.W_OK) or not os.access(directory, os.W_OK):
            raise StoreUnavailable(
                f"{self.path}: the file or its directory is not writable by this user"
            )

    async def open(self) -> None:
        """Create/open the file, apply migrations, and load the view."""
        if self._closed:
            raise BackendClosed("sqlite backend is closed")
        if self._opened:
            raise BackendError("sqlite backend is already opened")
        self._prepare_path()
        await self._bridge.start()
        ok = False
        try:
            try:
                self._conn = await self._bridge.run(_connect, self.path, self.options.busy_timeout)
                await self._bridge.run(_setup, self._conn, self.path, self.options)
                self._encoding = await self._bridge.run(_text_encoding, self._conn)
            except TractorRegError:
                raise
            except Exception as exc:
                raise translate(exc, self.path) from exc
            await self._view.open()
            await self._reload()
            ok = True
        finally:
            if not ok:
                await self._release()
        self._opened = True

    async def _release(self) -> None:
        with trio.CancelScope(shield=True):
            if self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    await self._bridge.run(_close, conn)
                except Exception as exc:  # noqa: BLE001 - closing; nothing left to protect
                    log.warning("closing %s failed: %s", self.path, exc)
            await self._bridge.aclose()

    async def aclose(self) -> None:
        """Close the connection and the bridge thread; wake waiters. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            # Let an in-flight group commit finish so its callers get their answer.
            async with self._sync_lock:
                await self._release()
            await self._view.aclose()

    async def run(self) -> None:
        """Keep the view coherent with other processes' writes; runs until cancelled."""
        while True:
            await trio.sleep(self.options.poll_interval)
            if self._closed:
                return
            try:
                await self.poll()
            except BackendClosed:
                return
            except BackendError as exc:
                log.warning("polling %s for changes failed: %s", self.path, exc)
            except Exception:
                log.exception("polling %s for changes failed unexpectedly", self.path)

    async def poll(self) -> None:
        """Apply every change other processes committed since the last look."""
        self._check_usable()
        async with self._sync_lock:
            conn = self._require_conn()
            try:
                delta = await self._bridge.run(_changes_since, conn, self._seq)
            except TractorRegError:
                raise
            except Exception as exc:
                raise translate(exc, self.path) from exc
            await self._apply_delta(delta)

    def _require_conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise BackendClosed("sqlite backend is closed")
        return self._conn

    # -- view maintenance --------------------------------------------------------------

    async def _reload(self) -> None:
        """Replace the view with the table. Everything is read first and swapped in
        without an await, so readers never see a half-loaded view, and a failed read
        leaves the previous one in place. Rows that cannot be decoded are skipped."""
        conn = self._require_conn()
        try:
            loaded = await self._load(conn)
        except sqlite3.OperationalError as exc:
            if not undecodable_text(exc) or conn.text_factory is lenient_text:
                raise translate(exc, self.path) from exc
            await self._bridge.run(_use_lenient_text, conn)
            loaded = await self._load(conn)
        snap, entries, history, bad = loaded
        for skipped in bad:
            self._skip(skipped)
        changes, floor = build_history(map(self._history_item, history), snap.revision)
        del history
        self._view.reset()
        # in revision order: the view keeps each name's order
        for entry in one_holder_per_address(entries, self.path):
            self._view.apply_upsert(entry)
        del entries
        self._seq = snap.seq
        self._view.apply_revision(snap.revision)
        self._view.start_history(snap.revision)
        self._view.load_history(changes, floor)

    async def _load(
        self, conn: aiosqlite.Connection
    ) -> tuple[_Snapshot, list[Entry], list[tuple[Any, ...]], list[BadRow]]:
        """Read every entry (decoded; the rows that fail, as BadRow) and the history rows.

        Raises the driver's OperationalError for text that is not UTF-8 (the caller
        switches to lenient reading and loads again), other errors translated."""
        entries: list[Entry] = []
        bad: list[BadRow] = []
        # Inside a write transaction (a writer that fell behind) the snapshot is that
        # transaction's, and its owner ends it.
        own_txn = not conn.in_transaction
        snap: _Snapshot | None = None
        try:
            snap = await self._bridge.run(_snapshot_open, conn, own_txn)
            while rows := await self._bridge.run(_snapshot_page, snap):
                for row in rows:
                    try:
                        entries.append(entry_from_row(row, row[7]))
                    except RowError as exc:
                        bad.append(_bad_entry(row, exc))
                del rows
            # Watchers resume across a restart: the retained change rows are the history.
            history = await self._bridge.run(_history_rows, conn, snap.seq, _HISTORY_ROWS)
        except TractorRegError:
            raise
        except Exception as exc:
            if undecodable_text(exc):
                raise
            raise translate(exc, self.path) from exc
        finally:
            with trio.CancelScope(shield=True):
                try:
                    if snap is not None:
                        await self._bridge.run(_snapshot_close, conn, snap)
                    elif own_txn:
                        await self._bridge.run(_end_read, conn)
                except Exception as exc:  # noqa: BLE001 - a read-only snapshot: nothing to lose
                    log.warning("%s: ending the snapshot read failed: %s", self.path, exc)
        assert snap is not None  # the try above either set it or raised
        return snap, entries, history, bad

    def _history_item(self, row: Sequence[Any]) -> HistoryRow | Unreadable:
        try:
            return history_row(change_from_row(row))
        except RowError as exc:
            self._skip(_bad_change(row, exc))
            return row[1] if type(row[1]) is int else None

    async def _apply_delta(self, delta: _Delta) -> None:
        if delta.gap:
            log.info("%s: fell behind the change log; reloading the table", self.path)
            await self._reload()
            return
        top_revision = 0
        for row in delta.rows:
            # seq is the rowid (INTEGER PRIMARY KEY): always an integer
            self._seq = int(row[0])
            try:
                change = change_from_row(row)
            except RowError as exc:
                self._skip(_bad_change(row, exc))
                continue
            top_revision = max(top_revision, change.store_revision)
            visible = change_for(change.kind, change.reason, change.store_revision)
            if change.entry is None:
                self._view.apply_delete(change.uid, visible)
            else:
                self._view.apply_upsert(change.entry, visible)
        self._view.apply_revision(max(top_revision, delta.revision))

    def _where(self) -> str:
        return self.path

    # -- writes --------------------------------------------------------------------------

    async def _commit_batch(self, batch: list[Op]) -> None:
        try:
            async with self._sync_lock:
                if self._closed or self._conn is None:
                    raise BackendClosed("sqlite backend is closed")
                conn = self._conn
                # Optimistic first: plan against the view and commit in one bridge trip if
                # no other process wrote since the view was synced. An empty plan (a
                # no-op, or an answer like "not registered") takes the locked path, so it
                # is never decided on a stale view.
                plan = await plan_batch(self._view, batch, self._clock())
                if not plan.empty:
                    try:
                        seq = await self._bridge.run(
                            _commit_if_current,
                            conn,
                            self._seq,
                            self._view.current_revision,
                            self._write_for(plan),
                            self._encoding,
                        )
                    except TractorRegError:
                        raise
                    except Exception as exc:
                        raise translate(exc, self.path) from exc
                    if seq is not None:
                        self._seq = seq
                        self._apply_plan(plan)
                        self._deliver(batch, plan)
                        return
                await self._commit_locked(conn, batch)
        except TractorRegError as exc:
            for op in batch:
                op.error = exc

    async def _commit_locked(self, conn: aiosqlite.Connection, batch: list[Op]) -> None:
        """Take the write lock, replay others' commits, then plan and commit."""
        try:
            delta = await self._bridge.run(_begin_write, conn, self._seq)
        except TractorRegError:
            raise
        except Exception as exc:
            raise translate(exc, self.path) from exc
        try:
            # Under the write lock: replay others' commits, so the plan is exact.
            await self._apply_delta(delta)
            plan = await plan_batch(self._view, batch, self._clock())
            if plan.empty:
                await self._bridge.run(_commit_empty, conn)
            else:
                self._seq = await self._bridge.run(_write_commit, conn, self._write_for(plan))
        except TractorRegError:
            await self._bridge.run(_rollback, conn)
            raise
        except Exception as exc:
            await self._bridge.run(_rollback, conn)
            raise translate(exc, self.path) from exc
        if not plan.empty:
            self._apply_plan(plan)
        self._deliver(batch, plan)

    def _write_for(self, plan: Plan) -> _Write:
        self._commits += 1
        prune = None
        if self._commits % 256 == 0 and self._seq > self.options.change_retention:
            prune = self._seq - self.options.change_retention
        # The view still holds the rows the plan deletes (it is applied after the commit).
        deleted = [self._view.raw_entry(uid) for uid, _ in plan.deletes]
        return _Write(
            revision=plan.revision,
            upserts=plan.upserts,
            deletes=plan.deletes,
            now=time.time(),
            prune_below=prune,
            deleted_addrs=[None if e is None else _addrs_json(e) for e in deleted],
        )


# -- tools --------------------------------------------------------------------------------


def _path_of(url_or_path: str) -> str:
    if "://" in url_or_path or url_or_path.startswith("sqlite:"):
        return parse_sqlite_url(url_or_path).path
    return url_or_path


async def migrate_sqlite(url_or_path: str, *, dry_run: bool = False) -> MigrationReport:
    """Bring a SQLite registry file to the latest schema (or, with ``dry_run``, report
    which migrations would run without writing anything).

    Accepts a ``sqlite://`` URL or a plain path. A missing file is created (unless
    ``dry_run``, which then reports every migration as pending). Raises
    :class:`~tractor_reg.SchemaError` for a foreign or newer database.
    """
    path = _path_of(url_or_path)
    if dry_run and not os.path.exists(path):  # noqa: ASYNC240 - one stat
        names = [m.name for m in load_migrations()]
        return MigrationReport(path, 0, latest_version(), names, dry_run=True)
    backend = SQLiteBackend(path)
    if not dry_run:
        backend._prepare_path()

    async def work(conn: aiosqlite.Connection) -> MigrationReport:
        if dry_run:
            return await apply_migrations(conn, path, dry_run=True)
        return await _setup(conn, path, backend.options)

    return await _with_connection(path, "migrate", work)


async def _with_connection(
    path: str, purpose: str, work: Callable[[aiosqlite.Connection], Awaitable[T]]
) -> T:
    """Run ``work`` on a connection to ``path`` in a bridge of its own (for the tools),
    translating driver errors and leaving no thread behind."""
    bridge = AsyncioThread(f"tractor_reg-sqlite-{purpose}")
    await bridge.start()
    conn: aiosqlite.Connection | None = None
    try:
        try:
            conn = await bridge.run(_connect, path, DEFAULT_BUSY_TIMEOUT)
            return await bridge.run(work, conn)
        except TractorRegError:
            raise
        except Exception as exc:
            raise translate(exc, path) from exc
    finally:
        with trio.CancelScope(shield=True):
            if conn is not None:
                await bridge.run(_close, conn)
            await bridge.aclose()


async def _backup(src: aiosqlite.Connection, dest_path: str) -> None:
    dest = await aiosqlite.connect(dest_path)
    try:
        await src.backup(dest)
    finally:
        await _close(dest)


async def backup_sqlite(url_or_path: str, dest_path: str) -> None:
    """Copy a live registry file to ``dest_path`` with SQLite's online backup API.

    Safe while registrars are writing to the source: the copy is a consistent snapshot.
    The destination is created owner-only and overwritten if it exists.
    """
    path = _path_of(url_or_path)
    if not os.path.exists(path):  # noqa: ASYNC240 - one stat
        raise StoreUnavailable(f"no database at {path}")
    try:
        os.close(os.open(dest_path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreUnavailable(f"cannot create the backup file {dest_path}: {exc}") from exc

    async def work(conn: aiosqlite.Connection) -> None:
        await inspect_schema(conn, path)
        await _backup(conn, dest_path)

    await _with_connection(path, "backup", work)
