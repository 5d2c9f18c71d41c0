"""What durable backends share: an in-memory read view, group commit, and planning.

A durable backend keeps the whole table in a :class:`MemoryBackend` used as a *replica*:
reads are answered from it without touching the store, and it only ever holds rows the
store committed. Writes queue up; the first writer leads and commits every queued
operation as one batch.

Planning a batch reuses the memory backend's rules instead of re-implementing them: the
rows the batch touches are copied into a scratch :class:`MemoryBackend`, the operations
run there, and the difference is what the store must write.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import trio

from .._exceptions import BackendClosed, BackendError, InvalidRequest, PermissionDenied
from ._base import AddrTuple, Change, Clock, Entry, Uid
from ._memory import MemoryBackend

log = logging.getLogger("tractor_reg.backends")

#: Why a row changed, as recorded in change logs.
REASONS = {
    "register": "register",
    "unregister": "unregister",
    "renew": "renew",
    "delete_addr": "delete_addr",
    "purge": "expire",
}


def change_kind(row: str, reason: str) -> str | None:
    """The watcher-visible kind of a stored row change (``None``: not a change, a renew)."""
    if row == "upsert":
        return {"register": "registered", "evict": "updated", "delete_addr": "updated"}.get(
            reason, "registered" if reason != "renew" else None
        )
    return {"expire": "expired"}.get(reason, "unregistered")


def change_for(row: str, reason: str, revision: int) -> tuple[str, int] | None:
    kind = change_kind(row, reason)
    return None if kind is None else (kind, revision)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One stored change row, read back to rebuild a view's change history.

    ``addrs`` of a deletion is ``None`` when the row did not keep them (older rows).
    """

    seq: int
    revision: int
    row: str  # "upsert" or "delete"
    uid: Uid
    addrs: tuple[AddrTuple, ...] | None
    reason: str


#: A row that could not be read: the revision it was at, if that much was readable.
Unreadable = int | None


@dataclass(frozen=True, slots=True)
class BadRow:
    """A stored row a durable backend skipped because it cannot be decoded.

    ``kind`` is ``"entry"`` (a row of the table itself) or ``"change"`` (a change-log
    row); ``table`` names where it is stored (SQLite table, Redis key) and ``row`` which
    one (SQLite rowid, Redis hash field or stream id); ``reason`` says what is wrong.
    """

    kind: str
    table: str
    row: str
    reason: str

    def __str__(self) -> str:
        return f"{self.table} {self.row}: {self.reason}"

    def describe(self) -> str:
        """As logged: ``invalid row ...`` (an entry) or ``invalid change ...``."""
        return f"invalid {'row' if self.kind == 'entry' else 'change'} {self}"


#: Bad rows a backend remembers (their count goes on in ``skipped_rows``).
MAX_BAD_ROWS = 1000


def build_history(
    rows: Iterable[HistoryRow | Unreadable], revision: int
) -> tuple[list[Change], int]:
    """The watcher-visible changes of stored rows (oldest first, none after ``revision``,
    the loaded table's), and the revision after which they are complete.

    The oldest revision read may have lost rows to pruning or to a row limit, so the
    history is complete only after it, unless the rows start at the very first change
    (seq 1). An unreadable row restarts the history after it. A deletion without its
    addresses gets those of the uid's last upsert read (what a live view reports), or
    none when that upsert is older than the rows.
    """
    changes: list[Change] = []
    last_addrs: dict[Uid, tuple[AddrTuple, ...]] = {}
    floor: int | None = None
    for item in rows:
        if not isinstance(item, HistoryRow):
            changes.clear()
            floor = item
            continue
        if item.row == "upsert":
            addrs = item.addrs or ()
            last_addrs[item.uid] = addrs
        else:
            known = last_addrs.pop(item.uid, ())
            addrs = known if item.addrs is None else item.addrs
        if floor is None:
            floor = 0 if item.seq == 1 else item.revision
        kind = change_kind(item.row, item.reason)
        if kind is not None and item.revision > floor:
            name, uuid = item.uid
            changes.append(
                Change(kind=kind, revision=item.revision, name=name, uuid=uuid, addrs=addrs)
            )
    if floor is None or floor > revision:
        return [], revision
    return changes, floor


@dataclass
class Op:
    """One queued write. ``kind`` names a MemoryBackend write (``purge`` for purge_expired)."""

    kind: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None
    #: Set when ``result``/``error`` hold the op's outcome.
    answered: bool = False


@dataclass
class Plan:
    """The outcome of running a batch on scratch rows: what to write, and each answer."""

    revision: int
    upserts: list[tuple[Entry, str]]
    deletes: list[tuple[Uid, str]]
    outcomes: list[tuple[Any, BaseException | None]]
    base_revision: int = 0

    @property
    def empty(self) -> bool:
        """Nothing to store. Writes that cancelled out (register then unregister) still
        used revisions, which the store must keep so that none is handed out twice."""
        return not self.upserts and not self.deletes and self.revision == self.base_revision


def _uid_of(value: object) -> Uid | None:
    if isinstance(value, tuple | list) and len(value) == 2:
        key = (value[0], value[1])
        try:
            hash(key)
        except TypeError:
            return None
        return key
    return None


def _owner(view: MemoryBackend, addr: object) -> Uid | None:
    if isinstance(addr, tuple | list) and len(addr) == 2:
        try:
            return view.raw_owner((addr[0], addr[1]))
        except TypeError:
            return None
    return None


def _candidates(op: Op, rows: MemoryBackend, now: float) -> list[Uid]:
    """The uids an operation can change, found before it runs."""
    found: list[Uid] = []
    if op.kind == "purge":
        found.extend(e.uid for e in rows.raw_expired(now))
    elif op.kind == "delete_addr":
        owner = _owner(rows, op.args[0])
        if owner is not None:
            found.append(owner)
    else:
        own = _uid_of(op.args[0])
        if own is not None:
            found.append(own)
        if op.kind == "register" and isinstance(op.args[1], list | tuple):
            for addr in op.args[1]:
                owner = _owner(rows, addr)
                if owner is not None:
                    found.append(owner)
    return found


#: Ops planned between two schedule points.
_OPS_PER_YIELD = 512


class _Scratch(MemoryBackend):
    """The rows one :func:`plan_batch` call works on. Nothing else can reach them, so
    its writes need no schedule point of their own (one per op made a large part of a
    batch's CPU)."""

    async def _enter(self) -> None:
        self._check_usable()


def one_holder_per_address(entries: Sequence[Entry], where: str) -> list[Entry]:
    """``entries`` (in revision order) with every address held by one uid only.

    The store's writes keep an address to one uid; a table edited by hand (or restored
    from mixed backups) may not. The newest holder keeps the address, as a registration
    would have made it; an older holder loses it (and goes if it has none left), with an
    ERROR naming both.
    """
    holder: dict[AddrTuple, int] = {}
    for index, entry in enumerate(entries):
        for addr in entry.addrs:
            holder[addr] = index
    kept: list[Entry] = []
    for index, entry in enumerate(entries):
        addrs = tuple(a for a in entry.addrs if holder[a] == index)
        if len(addrs) == len(entry.addrs):
            kept.append(entry)
            continue
        for addr in entry.addrs:
            if holder[addr] != index:
                log.error(
                    "%s: address %s is held by %s and by the newer %s; %s loses it",
                    where,
                    addr,
                    entry.uid,
                    entries[holder[addr]].uid,
                    entry.uid,
                )
        if addrs:
            kept.append(msgspec.structs.replace(entry, addrs=addrs))
    return kept


async def plan_batch(view: MemoryBackend, batch: Sequence[Op], now: float) -> Plan:
    """Run ``batch`` against a scratch copy of the rows it touches in ``view``."""
    touched: dict[Uid, Entry | None] = {}
    for op in batch:
        for uid in _candidates(op, view, now):
            if uid not in touched:
                touched[uid] = view.raw_entry(uid)

    scratch = _Scratch(clock=lambda: now)
    await scratch.open()
    for entry in sorted((e for e in touched.values() if e is not None), key=revision_of):
        scratch.apply_upsert(entry)
    scratch.apply_revision(view.current_revision)

    reasons: dict[Uid, str] = {}
    outcomes: list[tuple[Any, BaseException | None]] = []
    for i, op in enumerate(batch, 1):
        if i % _OPS_PER_YIELD == 0:
            # A storm's batch can hold thousands of ops: let lookups in meanwhile. The
            # view only changes under the backend's sync lock, which the caller holds.
            await trio.lowlevel.checkpoint()
        before = {uid: scratch.raw_entry(uid) for uid in _candidates(op, scratch, now)}
        method = "purge_expired" if op.kind == "purge" else op.kind
        try:
            result = await getattr(scratch, method)(*op.args, **op.kwargs)
        except (InvalidRequest, PermissionDenied) as exc:
            # A refused write changes nothing; it is decided on rows the store holds
            # (the caller commits the plan only if the store did not move meanwhile).
            outcomes.append((None, exc))
            continue
        outcomes.append((result, None))
        own = _uid_of(op.args[0]) if op.kind in ("register", "unregister", "renew") else None
        for uid, old in before.items():
            if scratch.raw_entry(uid) != old and not (op.kind == "renew" and uid in reasons):
                # (a renew after another change of the uid in this batch keeps that
                # change's reason: it must still reach the change log)
                evicted = op.kind == "register" and uid != own
                reasons[uid] = "evict" if evicted else REASONS[op.kind]
            touched.setdefault(uid, old)

    upserts: list[tuple[Entry, str]] = []
    deletes: list[tuple[Uid, str]] = []
    for uid, old in touched.items():
        new = scratch.raw_entry(uid)
        if new is None and old is not None:
            deletes.append((uid, reasons.get(uid, "delete")))
        elif new is not None and new != old:
            upserts.append((new, reasons.get(uid, "register")))
    upserts.sort(key=lambda item: item[0].revision)
    return Plan(scratch.current_revision, upserts, deletes, outcomes, view.current_revision)


def revision_of(entry: Entry) -> int:
    return entry.revision


def interned_addrs(pairs: Sequence[tuple[str, int | str]]) -> tuple[AddrTuple, ...]:
    """Decoded addresses as stored in a view: hosts and socket directories repeat
    across a whole store, so each is interned (one string object, not one per entry)."""
    intern = sys.intern
    if len(pairs) == 1:  # the common case, without a generator
        host, rest = pairs[0]
        return cast(tuple[AddrTuple, ...], ((intern(host), rest),))
    return cast(tuple[AddrTuple, ...], tuple((intern(host), rest) for host, rest in pairs))


class ReplicatedBackend:
    """Base of durable backends: reads from the view, writes through group commit.

    Subclasses implement :meth:`_commit_batch`, which must, for one batch of ops: bring
    the view up to date with the store, plan the batch with :func:`plan_batch`, make the
    store commit the plan atomically, then apply it with :meth:`_apply_plan` and store
    each op's outcome (or the error for all of them).
    """

    scheme: str = ""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._view = MemoryBackend(clock=clock)
        self._queue: list[Op] = []
        self._leading = False
        self._opened = False
        self._closed = False
        self._name = type(self).__name__
        #: Rows skipped because they cannot be decoded (at load or replay), logged.
        self.skipped_rows = 0
        #: The first :data:`MAX_BAD_ROWS` of them, each once.
        self.bad_rows: list[BadRow] = []
        self._bad_seen: set[tuple[str, str]] = set()

    def _skip(self, bad: BadRow) -> None:
        """Skip a row that cannot be decoded: count it, remember it, log an ERROR naming
        it. A row met again (by a reload) is logged and remembered once."""
        self.skipped_rows += 1
        key = (bad.table, bad.row)
        if key in self._bad_seen:
            return
        if len(self._bad_seen) < MAX_BAD_ROWS:
            self._bad_seen.add(key)
            self.bad_rows.append(bad)
        self._log.error("%s: skipping %s", self._where(), bad.describe())

    #: Where :meth:`_skip` logs.
    _log = log

    def _where(self) -> str:
        """The store, as log lines name it."""
        return f"{self.scheme} backend"

    def _check_usable(self) -> None:
        if self._closed:
            raise BackendClosed(f"{self.scheme} backend is closed")
        if not self._opened:
            raise BackendClosed(f"{self.scheme} backend not opened: await open() first")

    def _apply_plan(self, plan: Plan) -> None:
        for uid, reason in plan.deletes:
            self._view.apply_delete(uid, change_for("delete", reason, plan.revision))
        for entry, reason in plan.upserts:
            self._view.apply_upsert(entry, change_for("upsert", reason, plan.revision))
        self._view.apply_revision(plan.revision)

    async def _commit_batch(self, batch: list[Op]) -> None:
        raise NotImplementedError

    async def _submit(self, op: Op) -> Any:
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
                        # Every writer of the batch must hear how it ended, not only this
                        # task: an op left without an answer gets an error, never None.
                        failure: BackendError | None = None
                        try:
                            await self._commit_batch(batch)
                        except Exception as exc:
                            # A bug, not a store error (those are answers).
                            log.exception("%s backend: committing a batch failed", self.scheme)
                            failure = BackendError(f"{self.scheme} backend failed: {exc!r}")
                            failure.__cause__ = exc
                        finally:
                            for queued in batch:
                                if queued.error is None and not queued.answered:
                                    if failure is None:  # interrupted (KeyboardInterrupt)
                                        failure = BackendError(
                                            f"{self.scheme} backend: the write's outcome is unknown"
                                        )
                                    queued.error = failure
                                queued.done.set()
            finally:
                self._leading = False
        # A caller cancelled here may still see its write committed (as with any
        # database): the answer is lost, not the write.
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    @staticmethod
    def _deliver(batch: Sequence[Op], plan: Plan) -> None:
        for op, (result, error) in zip(batch, plan.outcomes, strict=True):
            op.result, op.error = result, error
            op.answered = True

    # -- writes ----------------------------------------------------------------------

    async def register(
        self,
        uid: Uid,
        addrs: Sequence[AddrTuple],
        ttl: float,
        *,
        registrar: str = "",
        owner: bytes = b"",
    ) -> Entry:
        result: Entry = await self._submit(
            Op("register", (uid, addrs, ttl), {"registrar": registrar, "owner": owner})
        )
        return result

    async def unregister(self, uid: Uid, *, owner: bytes | None = None) -> Entry | None:
        result: Entry | None = await self._submit(Op("unregister", (uid,), {"owner": owner}))
        return result

    async def renew(self, uid: Uid, ttl: float, *, owner: bytes | None = None) -> Entry | None:
        result: Entry | None = await self._submit(Op("renew", (uid, ttl), {"owner": owner}))
        return result

    async def delete_addr(self, addr: AddrTuple) -> Uid | None:
        result: Uid | None = await self._submit(Op("delete_addr", (addr,)))
        return result

    async def purge_expired(self) -> list[Entry]:
        await trio.lowlevel.checkpoint()
        self._check_usable()
        if not self._view.raw_expired(self._clock()):
            return []  # nothing expired: no write at all
        result: list[Entry] = await self._submit(Op("purge", ()))
        return result

    # -- reads (the view) ------------------------------------------------------------

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

    async def changes_since(self, after: int, *, limit: int = 1000) -> list[Change]:
        self._check_usable()
        return await self._view.changes_since(after, limit=limit)

    async def poll(self) -> None:
        """Apply to the view every change the store holds that it has not seen."""
        raise NotImplementedError

    async def refresh(self) -> None:
        await self.poll()
