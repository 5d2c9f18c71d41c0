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

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosqlite
import trio

from .._aio import AsyncioThread
from .._exceptions import (
    BackendClosed,
    BackendError,
    BackendURLError,
    InvalidRequest,
    StoreUnavailable,
    TractorRegError,
)
from ._base import DEFAULT_CLOCK, AddrTuple, Clock, Entry, Uid
from ._memory import MemoryBackend
from ._sqlite_schema import (
    MigrationReport,
    apply_migrations,
    inspect_schema,
    latest_version,
    load_migrations,
    translate,
)

log = logging.getLogger("tractor_reg.backends.sqlite")

SYNC_LEVELS = ("normal", "full")
DEFAULT_SYNCHRONOUS = "full"
DEFAULT_BUSY_TIMEOUT = 5.0
DEFAULT_POLL_INTERVAL = 0.1
#: Change-log rows kept; a process that falls further behind reloads the whole table.
DEFAULT_CHANGE_RETENTION = 100_000

_ENTRY_COLUMNS = "name, uuid, addrs, revision, registered_at, expires_at, registrar"


# -- URL --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SQLiteOptions:
    path: str
    synchronous: str = DEFAULT_SYNCHRONOUS
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    change_retention: int = DEFAULT_CHANGE_RETENTION


def _positive(name: str, raw: str, url: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BackendURLError(f"option {name}={raw!r} in {url!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise BackendURLError(f"option {name}={raw!r} in {url!r} must be > 0")
    return value


def parse_sqlite_url(url: str) -> SQLiteOptions:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` plus options.

    Options (query string): ``synchronous=normal|full`` (default full),
    ``busy_timeout=SECONDS`` (default 5), ``poll_interval=SECONDS`` (default 0.1),
    ``change_retention=ROWS`` (default 100000).
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
            opts[key] = _positive(key, value, url)
        elif key == "change_retention":
            if not value.isdigit() or int(value) < 1000:
                raise BackendURLError(f"change_retention={value!r} must be an integer >= 1000")
            opts[key] = int(value)
        else:
            raise BackendURLError(
                f"unknown sqlite option {key!r} in {url!r}; known: synchronous, busy_timeout, "
                "poll_interval, change_retention"
            )
    return SQLiteOptions(path=path, **opts)


# -- rows -------------------------------------------------------------------------------


def _addrs_json(entry: Entry) -> str:
    return json.dumps([list(a) for a in entry.addrs], separators=(",", ":"))


def _decode_addrs(raw: object) -> tuple[AddrTuple, ...]:
    if not isinstance(raw, str):
        raise ValueError(f"addrs is not text: {raw!r}")
    items = json.loads(raw)
    if not isinstance(items, list) or not items:
        raise ValueError(f"addrs is not a non-empty list: {raw!r}")
    out: list[AddrTuple] = []
    for item in items:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], bool)
            or not isinstance(item[1], int | str)
        ):
            raise ValueError(f"bad address {item!r}")
        host_or_dir: str = item[0]
        port_or_file: int | str = item[1]
        if isinstance(port_or_file, int):
            out.append((host_or_dir, port_or_file))
        else:
            out.append((host_or_dir, port_or_file))
    return tuple(out)


def _entry_from_row(row: Sequence[Any]) -> Entry:
    """A row (name, uuid, addrs, revision, registered_at, expires_at, registrar) as an Entry.

    Raises ValueError for a row that was edited into something invalid.
    """
    name, uuid, addrs, revision, registered_at, expires_at, registrar = row
    if not isinstance(name, str) or not name or not isinstance(uuid, str) or not uuid:
        raise ValueError(f"bad uid {(name, uuid)!r}")
    if isinstance(revision, bool) or not isinstance(revision, int):
        raise ValueError(f"bad revision {revision!r}")
    for label, value in (("registered_at", registered_at), ("expires_at", expires_at)):
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"bad {label} {value!r}")
    return Entry(
        name=name,
        uuid=uuid,
        addrs=_decode_addrs(addrs),
        revision=revision,
        registered_at=float(registered_at),
        expires_at=float(expires_at),
        registrar=registrar if isinstance(registrar, str) else "",
    )


# -- asyncio side (runs in the bridge thread) --------------------------------------------


@dataclass
class _Snapshot:
    revision: int
    seq: int
    rows: list[tuple[Any, ...]]


@dataclass
class _Delta:
    """Change-log rows after a given seq (or a marker that they were pruned)."""

    gap: bool
    rows: list[tuple[Any, ...]] = field(default_factory=list)


async def _connect(path: str, busy_timeout: float) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    return conn


async def _setup(conn: aiosqlite.Connection, path: str, opts: SQLiteOptions) -> MigrationReport:
    # Inspect before any write so a foreign or newer database is left byte-for-byte alone.
    await inspect_schema(conn, path)
    await conn.execute(f"PRAGMA busy_timeout = {int(opts.busy_timeout * 1000)}")
    async with conn.execute("PRAGMA journal_mode = WAL") as cur:
        row = await cur.fetchone()
    if not row or str(row[0]).lower() != "wal":
        raise StoreUnavailable(f"{path}: could not switch to WAL mode (got {row!r})")
    await conn.execute(f"PRAGMA synchronous = {opts.synchronous.upper()}")
    return await apply_migrations(conn, path)


async def _snapshot(conn: aiosqlite.Connection) -> _Snapshot:
    """Every row, the store revision and the change-log position, from one read snapshot."""
    await conn.execute("BEGIN")
    try:
        async with conn.execute("SELECT value FROM meta WHERE key = 'revision'") as cur:
            row = await cur.fetchone()
        revision = int(row[0]) if row else 0
        async with conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes") as cur:
            row = await cur.fetchone()
        seq = int(row[0]) if row else 0
        async with conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries ORDER BY revision") as cur:
            rows = [tuple(r) for r in await cur.fetchall()]
    finally:
        await conn.execute("COMMIT")
    return _Snapshot(revision, seq, rows)


async def _changes_since(conn: aiosqlite.Connection, seq: int) -> _Delta:
    async with conn.execute(
        "SELECT seq, store_revision, kind, name, uuid, addrs, revision, registered_at, "
        "expires_at, registrar FROM changes WHERE seq > ? ORDER BY seq",
        (seq,),
    ) as cur:
        rows = [tuple(r) for r in await cur.fetchall()]
    if rows and rows[0][0] != seq + 1:
        # Rows we never saw were pruned (or a seq was skipped by a rolled back insert):
        # tell the caller whether the log still covers everything after `seq`.
        async with conn.execute("SELECT MIN(seq) FROM changes") as cur:
            first = await cur.fetchone()
        if first and first[0] is not None and int(first[0]) > seq + 1 and seq > 0:
            return _Delta(gap=True)
    return _Delta(gap=False, rows=rows)


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


@dataclass
class _Write:
    revision: int
    upserts: list[tuple[Entry, str]]
    deletes: list[tuple[Uid, str]]
    now: float
    prune_below: int | None


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
                f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name, uuid) DO UPDATE SET addrs = excluded.addrs, "
                "revision = excluded.revision, registered_at = excluded.registered_at, "
                "expires_at = excluded.expires_at, registrar = excluded.registrar",
                [
                    (
                        e.name,
                        e.uuid,
                        _addrs_json(e),
                        e.revision,
                        e.registered_at,
                        e.expires_at,
                        e.registrar,
                    )
                    for e, _ in write.upserts
                ],
            )
        log_rows: list[tuple[Any, ...]] = [
            (
                write.revision,
                "delete",
                uid[0],
                uid[1],
                None,
                None,
                None,
                None,
                None,
                reason,
                write.now,
            )
            for uid, reason in write.deletes
        ] + [
            (
                write.revision,
                "upsert",
                e.name,
                e.uuid,
                _addrs_json(e),
                e.revision,
                e.registered_at,
                e.expires_at,
                e.registrar,
                reason,
                write.now,
            )
            for e, reason in write.upserts
        ]
        await conn.executemany(
            "INSERT INTO changes (store_revision, kind, name, uuid, addrs, revision, "
            "registered_at, expires_at, registrar, reason, committed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            log_rows,
        )
        await conn.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (write.revision,))
        if write.prune_below is not None:
            await conn.execute("DELETE FROM changes WHERE seq < ?", (write.prune_below,))
        async with conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes") as cur:
            row = await cur.fetchone()
        await conn.execute("COMMIT")
        committed = True
    finally:
        if not committed:  # failed or cancelled: release the write lock
            await _rollback(conn)
    return int(row[0]) if row else 0


async def _commit_empty(conn: aiosqlite.Connection) -> None:
    await conn.execute("COMMIT")


# -- trio side ---------------------------------------------------------------------------


@dataclass
class _Op:
    kind: str  # register | unregister | renew | delete_addr | purge
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


_REASONS = {
    "register": "register",
    "unregister": "unregister",
    "renew": "renew",
    "delete_addr": "delete_addr",
    "purge": "expire",
}


class SQLiteBackend:
    """:class:`~tractor_reg.backends.RegistryBackend` stored in a SQLite file (WAL).

    Writes are committed (with the configured ``synchronous`` level) before they return;
    reads are answered from memory. Several processes may open the same file.
    Call :meth:`run` in a nursery while the backend is open to see other processes'
    writes within ``poll_interval`` seconds (``opened_backend`` does this for you).
    """

    scheme: str = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = DEFAULT_SYNCHRONOUS,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        change_retention: int = DEFAULT_CHANGE_RETENTION,
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
        )
        self.path = path
        self._clock = clock
        self._view = MemoryBackend(clock=clock)
        self._bridge = AsyncioThread(f"tractor_reg-sqlite:{os.path.basename(path)}")
        self._conn: aiosqlite.Connection | None = None
        self._seq = 0
        self._queue: list[_Op] = []
        self._leading = False
        self._sync_lock = trio.Lock()
        self._opened = False
        self._closed = False
        self._commits = 0
        #: Rows found invalid at load/replay (skipped, logged).
        self.skipped_rows = 0

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = DEFAULT_CLOCK) -> Self:
        opts = parse_sqlite_url(url)
        return cls(
            opts.path,
            synchronous=opts.synchronous,
            busy_timeout=opts.busy_timeout,
            poll_interval=opts.poll_interval,
            change_retention=opts.change_retention,
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
                    await self._bridge.run(conn.close)
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
            except BackendError as exc:
                log.warning("polling %s for changes failed: %s", self.path, exc)

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

    def _check_usable(self) -> None:
        if self._closed:
            raise BackendClosed("sqlite backend is closed")
        if not self._opened:
            raise BackendClosed("sqlite backend not opened: await open() first")

    def _require_conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise BackendClosed("sqlite backend is closed")
        return self._conn

    # -- view maintenance --------------------------------------------------------------

    async def _reload(self) -> None:
        snap = await self._bridge.run(_snapshot, self._require_conn())
        self._view.reset()
        for row in snap.rows:
            try:
                self._view.apply_upsert(_entry_from_row(row))
            except (ValueError, TypeError) as exc:
                self.skipped_rows += 1
                log.error("%s: skipping invalid row %r: %s", self.path, row[:2], exc)
        self._seq = snap.seq
        self._view.apply_revision(snap.revision)

    async def _apply_delta(self, delta: _Delta) -> None:
        if delta.gap:
            log.info("%s: fell behind the change log; reloading the table", self.path)
            await self._reload()
            return
        top_revision = 0
        for row in delta.rows:
            seq, store_revision, kind, name, uuid = row[:5]
            self._seq = int(seq)
            top_revision = max(top_revision, int(store_revision))
            try:
                if kind == "delete":
                    self._view.apply_delete((name, uuid))
                else:
                    self._view.apply_upsert(_entry_from_row((name, uuid, *row[5:10])))
            except (ValueError, TypeError) as exc:
                self.skipped_rows += 1
                log.error("%s: skipping invalid change #%s: %s", self.path, seq, exc)
        self._view.apply_revision(top_revision)

    # -- writes --------------------------------------------------------------------------

    async def _submit(self, op: _Op) -> Any:
        self._check_usable()
        self._queue.append(op)
        if not self._leading:
            self._leading = True
            try:
                # Shielded: other callers' writes ride in the batch this task leads.
                with trio.CancelScope(shield=True):
                    while self._queue:
                        await trio.lowlevel.checkpoint()  # let concurrent writers queue
                        batch, self._queue = self._queue, []
                        await self._commit(batch)
            finally:
                self._leading = False
        # A caller cancelled here may still see its write committed (as with any
        # database): the answer is lost, not the write.
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def _commit(self, batch: list[_Op]) -> None:
        try:
            async with self._sync_lock:
                if self._closed or self._conn is None:
                    raise BackendClosed("sqlite backend is closed")
                conn = self._conn
                try:
                    delta = await self._bridge.run(_begin_write, conn, self._seq)
                except TractorRegError:
                    raise
                except Exception as exc:
                    raise translate(exc, self.path) from exc
                try:
                    await self._apply_delta(delta)
                    write = await self._plan(batch)
                    if write is None:
                        await self._bridge.run(_commit_empty, conn)
                    else:
                        self._seq = await self._bridge.run(_write_commit, conn, write)
                except TractorRegError:
                    await self._bridge.run(_rollback, conn)
                    raise
                except Exception as exc:
                    await self._bridge.run(_rollback, conn)
                    raise translate(exc, self.path) from exc
                if write is not None:
                    for uid, _ in write.deletes:
                        self._view.apply_delete(uid)
                    for entry, _ in write.upserts:
                        self._view.apply_upsert(entry)
                    self._view.apply_revision(write.revision)
        except TractorRegError as exc:
            for op in batch:
                if not op.done.is_set():
                    op.error = exc
        finally:
            for op in batch:
                op.done.set()

    async def _plan(self, batch: list[_Op]) -> _Write | None:
        """Run the batch on a scratch copy of the rows it touches; return the diff.

        Each operation's result (or its InvalidRequest) is stored on the op; the write
        itself is all-or-nothing for the batch.
        """
        view = self._view
        now = self._clock()
        touched: dict[Uid, Entry | None] = {}

        def seed_uid(uid: object) -> None:
            if isinstance(uid, tuple | list) and len(uid) == 2:
                try:
                    key = (uid[0], uid[1])
                    if key not in touched:
                        touched[key] = view.raw_entry(key)
                except TypeError:
                    pass

        def seed_addr(addr: object) -> None:
            if isinstance(addr, tuple | list) and len(addr) == 2:
                try:
                    owner = view.raw_owner((addr[0], addr[1]))
                except TypeError:
                    return
                if owner is not None:
                    seed_uid(owner)

        for op in batch:
            if op.kind == "purge":
                for entry in view.raw_expired(now):
                    seed_uid(entry.uid)
            elif op.kind == "delete_addr":
                seed_addr(op.args[0])
            else:
                seed_uid(op.args[0])
                if op.kind == "register" and isinstance(op.args[1], list | tuple):
                    for addr in op.args[1]:
                        seed_addr(addr)

        scratch = MemoryBackend(clock=lambda: now)
        await scratch.open()
        for entry in sorted((e for e in touched.values() if e is not None), key=_by_rev):
            scratch.apply_upsert(entry)
        scratch.apply_revision(view.current_revision)
        reasons: dict[Uid, str] = {}
        for op in batch:
            candidates = _candidate_uids(op, scratch, now)
            before = {uid: scratch.raw_entry(uid) for uid in candidates}
            method = "purge_expired" if op.kind == "purge" else op.kind
            try:
                op.result = await getattr(scratch, method)(*op.args, **op.kwargs)
            except InvalidRequest as exc:
                op.error = exc
                continue
            own = _uid_of(op.args[0]) if op.kind in ("register", "unregister", "renew") else None
            for uid, old in before.items():
                if scratch.raw_entry(uid) != old:
                    evicted = op.kind == "register" and uid != own
                    reasons[uid] = "evict" if evicted else _REASONS[op.kind]

        upserts: list[tuple[Entry, str]] = []
        deletes: list[tuple[Uid, str]] = []
        for uid in set(touched) | {e.uid for e in scratch.raw_entries()}:
            old = touched.get(uid)
            new = scratch.raw_entry(uid)
            if new is None and old is not None:
                deletes.append((uid, reasons.get(uid, "delete")))
            elif new is not None and new != old:
                upserts.append((new, reasons.get(uid, "register")))
        if not upserts and not deletes:
            return None
        upserts.sort(key=lambda item: item[0].revision)
        self._commits += 1
        prune = None
        if self._commits % 256 == 0 and self._seq > self.options.change_retention:
            prune = self._seq - self.options.change_retention
        return _Write(
            revision=scratch.current_revision,
            upserts=upserts,
            deletes=deletes,
            now=time.time(),
            prune_below=prune,
        )

    async def register(
        self, uid: Uid, addrs: Sequence[AddrTuple], ttl: float, *, registrar: str = ""
    ) -> Entry:
        result: Entry = await self._submit(
            _Op("register", (uid, addrs, ttl), {"registrar": registrar})
        )
        return result

    async def unregister(self, uid: Uid) -> Entry | None:
        result: Entry | None = await self._submit(_Op("unregister", (uid,)))
        return result

    async def renew(self, uid: Uid, ttl: float) -> Entry | None:
        result: Entry | None = await self._submit(_Op("renew", (uid, ttl)))
        return result

    async def delete_addr(self, addr: AddrTuple) -> Uid | None:
        result: Uid | None = await self._submit(_Op("delete_addr", (addr,)))
        return result

    async def purge_expired(self) -> list[Entry]:
        await trio.lowlevel.checkpoint()
        self._check_usable()
        if not self._view.raw_expired(self._clock()):
            return []  # nothing to do: no write transaction
        result: list[Entry] = await self._submit(_Op("purge", ()))
        return result

    # -- reads (the view) ----------------------------------------------------------------

    async def get(self, uid: Uid) -> Entry | None:
        self._check_usable()
        return await self._view.get(uid)

    async def owner_of(self, addr: AddrTuple) -> Entry | None:
        self._check_usable()
        return await self._view.owner_of(addr)

    async def lookup(self, name: str) -> Entry | None:
        self._check_usable()
        return await self._view.lookup(name)

    async def lookup_all(self, name: str) -> list[Entry]:
        self._check_usable()
        return await self._view.lookup_all(name)

    async def entries(self) -> list[Entry]:
        self._check_usable()
        return await self._view.entries()

    async def count(self) -> int:
        self._check_usable()
        return await self._view.count()

    async def revision(self) -> int:
        self._check_usable()
        return await self._view.revision()

    async def wait_changed(self, after: int) -> int:
        self._check_usable()
        return await self._view.wait_changed(after)


def _by_rev(entry: Entry) -> int:
    return entry.revision


def _uid_of(value: object) -> Uid | None:
    if isinstance(value, tuple | list) and len(value) == 2:
        return (value[0], value[1])
    return None


def _candidate_uids(op: _Op, scratch: MemoryBackend, now: float) -> list[Uid]:
    """The uids an operation can change, found before it runs (to label the log)."""
    found: list[Uid] = []

    def owner(addr: object) -> None:
        if isinstance(addr, tuple | list) and len(addr) == 2:
            try:
                uid = scratch.raw_owner((addr[0], addr[1]))
            except TypeError:
                return
            if uid is not None:
                found.append(uid)

    if op.kind == "purge":
        found.extend(e.uid for e in scratch.raw_expired(now))
    elif op.kind == "delete_addr":
        owner(op.args[0])
    else:
        own = _uid_of(op.args[0])
        if own is not None:
            try:
                hash(own)
                found.append(own)
            except TypeError:
                pass
        if op.kind == "register" and isinstance(op.args[1], list | tuple):
            for addr in op.args[1]:
                owner(addr)
    return found


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
    bridge = AsyncioThread("tractor_reg-sqlite-migrate")
    await bridge.start()
    conn: aiosqlite.Connection | None = None
    try:
        try:
            conn = await bridge.run(_connect, path, DEFAULT_BUSY_TIMEOUT)
            if dry_run:
                return await bridge.run(_dry_run, conn, path)
            return await bridge.run(_setup, conn, path, backend.options)
        except TractorRegError:
            raise
        except Exception as exc:
            raise translate(exc, path) from exc
    finally:
        with trio.CancelScope(shield=True):
            if conn is not None:
                await bridge.run(conn.close)
            await bridge.aclose()


async def _dry_run(conn: aiosqlite.Connection, path: str) -> MigrationReport:
    return await apply_migrations(conn, path, dry_run=True)


async def _backup(src: aiosqlite.Connection, dest_path: str) -> None:
    dest = await aiosqlite.connect(dest_path)
    try:
        await src.backup(dest)
    finally:
        await dest.close()


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
    bridge = AsyncioThread("tractor_reg-sqlite-backup")
    await bridge.start()
    conn: aiosqlite.Connection | None = None
    try:
        try:
            conn = await bridge.run(_connect, path, DEFAULT_BUSY_TIMEOUT)
            await bridge.run(inspect_schema, conn, path)
            await bridge.run(_backup, conn, dest_path)
        except TractorRegError:
            raise
        except Exception as exc:
            raise translate(exc, path) from exc
    finally:
        with trio.CancelScope(shield=True):
            if conn is not None:
                await bridge.run(conn.close)
            await bridge.aclose()
