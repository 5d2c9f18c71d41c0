"""The ``memory://`` backend: the registry table in plain dicts, for one trio run.

Nothing survives the process; "durable when the call returns" holds trivially because
the dicts *are* the store. Every public method does all of its work between two
checkpoints without awaiting in the middle, so each call is atomic with respect to
other trio tasks. The backend is not thread-safe: use it from a single trio run.

Argument validation (shared shape rules, stricter than the type hints):

* a uid is a ``tuple`` or ``list`` of exactly two non-empty ``str`` (normalised to a tuple);
* an address is a ``tuple`` or ``list`` of two items: a ``str`` and either an ``int`` TCP
  port in ``0..65535`` (``bool`` is rejected) or a non-empty ``str`` UDS filename;
* ``addrs`` is a non-empty ``tuple`` or ``list`` of addresses; repeats within one call
  collapse as if the addresses were registered one after the other, so the *last*
  occurrence decides the position;
* a ttl is a finite ``int`` or ``float`` greater than zero (``bool`` is rejected).

Lease boundary: an entry is live while ``clock() < expires_at``; at ``expires_at`` it is
expired. Writes treat an expired-but-not-purged entry as absent: ``unregister``,
``renew`` and ``delete_addr`` ignore it (leaving it for ``purge_expired``), and
``register`` of its uid starts a fresh entry (new ``registered_at``, old addresses
dropped).

Ownership (see :mod:`tractor_reg.backends._base`): an ``owner`` is ``bytes`` of exactly
32 (a SHA-256 digest), or ``b""`` for ``register`` (an unowned entry); digests are
compared in constant time. Refusals raise :class:`~tractor_reg.PermissionDenied` after
validation and before anything changes.
"""

from __future__ import annotations

import heapq
import hmac
import math
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn, Self
from urllib.parse import urlsplit

import msgspec
import trio

from .._exceptions import (
    BackendClosed,
    BackendError,
    BackendURLError,
    ChangesExpired,
    InvalidRequest,
    PermissionDenied,
)
from ._base import DEFAULT_CLOCK, OWNER_DIGEST_SIZE, AddrTuple, Change, Clock, Entry, Uid

#: Changes kept for ``changes_since`` (older ones are dropped; watchers then resync).
DEFAULT_CHANGE_RETENTION = 10_000

__all__ = ["MemoryBackend"]

_MAX_PORT = 65535


def _invalid(msg: str) -> NoReturn:
    raise InvalidRequest(msg)


def _storable(text: str) -> bool:
    """Whether ``text`` can be stored: UTF-8 has no encoding of a lone surrogate, so no
    durable store can keep one (and it would fail a whole batch of writes there)."""
    # str's own methods: a subclass cannot answer for what gets stored.
    if str.isascii(text):
        return True
    try:
        str.encode(text)
    except UnicodeEncodeError:
        return False
    return True


def _check_uid(uid: object) -> Uid:
    if not isinstance(uid, tuple | list) or len(uid) != 2:
        _invalid(f"uid must be a (name, uuid) pair of non-empty str, got {uid!r}")
    name, uuid = uid
    if not isinstance(name, str) or not name:
        _invalid(f"uid name must be a non-empty str, got {name!r} in uid {uid!r}")
    if not isinstance(uuid, str) or not uuid:
        _invalid(f"uid uuid must be a non-empty str, got {uuid!r} in uid {uid!r}")
    name, uuid = str.__str__(name), str.__str__(uuid)  # plain str: checked is stored
    if not (_storable(name) and _storable(uuid)):
        _invalid(f"uid {uid!r} is not valid Unicode text (a lone surrogate)")
    return (name, uuid)


def _check_addr(addr: object) -> AddrTuple:
    if not isinstance(addr, tuple | list) or len(addr) != 2:
        _invalid(f"an address must be a (host, port) or (dir, filename) pair, got {addr!r}")
    first, second = addr
    if not isinstance(first, str):
        _invalid(f"address element 0 must be a str, got {first!r} in {addr!r}")
    first = str.__str__(first)  # a plain str: what is checked is what is stored
    if isinstance(second, str):
        second = str.__str__(second)
    if not _storable(first) or (isinstance(second, str) and not _storable(second)):
        _invalid(f"address {addr!r} is not valid Unicode text (a lone surrogate)")
    if isinstance(second, bool):
        _invalid(f"address port must be an int, not a bool, in {addr!r}")
    if isinstance(second, int):
        if not 0 <= second <= _MAX_PORT:
            _invalid(f"TCP port must be in 0..{_MAX_PORT}, got {second!r} in {addr!r}")
        # Hosts and socket directories repeat across entries: one string object each.
        return (sys.intern(first), int(second))
    if isinstance(second, str):
        if not second:
            _invalid(f"UDS filename must be a non-empty str in {addr!r}")
        return (sys.intern(first), second)
    _invalid(f"address element 1 must be an int port or a str filename, got {second!r}")


def _check_addrs(addrs: object) -> tuple[AddrTuple, ...]:
    # A bare str is a Sequence too; refusing anything but tuple/list keeps
    # ``register(uid, ("host", 1), ...)`` (one address, not a list of them) an error.
    if not isinstance(addrs, tuple | list):
        _invalid(f"addrs must be a tuple or list of addresses, got {addrs!r}")
    if not addrs:
        _invalid("addrs must not be empty")
    ordered: dict[AddrTuple, None] = {}
    for addr in addrs:
        key = _check_addr(addr)
        # pop + insert = "an address seen again moves to the end" within the call too
        ordered.pop(key, None)
        ordered[key] = None
    return tuple(ordered)


def _check_ttl(ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        _invalid(f"ttl must be an int or float number of seconds, got {ttl!r}")
    try:
        value = float(ttl)
    except OverflowError:
        _invalid(f"ttl must be finite, got {ttl!r}")
    if not math.isfinite(value) or value <= 0:
        _invalid(f"ttl must be a finite number > 0, got {ttl!r}")
    return value


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        _invalid(f"name must be a non-empty str, got {name!r}")
    return name


def check_owner(owner: object, *, unowned: bool) -> bytes:
    """An owner digest: ``bytes`` of exactly 32, or ``b""`` where ``unowned`` allows."""
    if type(owner) is not bytes or (
        len(owner) != OWNER_DIGEST_SIZE and not (unowned and not owner)
    ):
        shape = (
            f"{type(owner).__name__} of length {len(owner)}"
            if isinstance(owner, bytes)
            else repr(owner)
        )
        _invalid(
            f"owner must be a {OWNER_DIGEST_SIZE}-byte digest"
            + (' or b""' if unowned else "")
            + f", got {shape}"
        )
    return owner


def _same_owner(entry: Entry, owner: bytes) -> bool:
    return hmac.compare_digest(entry.owner, owner)


def _refuse(what: str, uid: Uid) -> NoReturn:
    raise PermissionDenied(
        f"{what} {uid[0]!r} ({uid[1]}): the entry belongs to whoever registered it; "
        "the lease token presented does not match"
    )


class MemoryBackend:
    """:class:`~tractor_reg.backends.RegistryBackend` kept in process memory.

    Indexes: ``_entries`` (uid -> entry) and, per name, ``_by_name`` (its uuid, or
    uuid -> None when it has several) are both kept in revision order (a
    re-registered uid is moved to the end), so "most
    recent" is the last live item and lookups never scan other names. ``_owner`` maps
    each address to its uid. ``_expiry`` is a lazy min-heap of ``(expires_at, uid)``
    so purging and "is anything expired?" checks cost O(log n) per expired entry.
    """

    scheme: str = "memory"

    def __init__(self, *, clock: Clock = DEFAULT_CLOCK) -> None:
        self._clock = clock
        self._opened = False
        self._closed = False
        self._revision = 0
        self._entries: dict[Uid, Entry] = {}
        # A name with one uuid (the common case) maps to that uuid itself: a dict per
        # name would cost ~200 bytes an entry at 100,000 entries.
        self._by_name: dict[str, str | dict[str, None]] = {}
        self._owner: dict[AddrTuple, Uid] = {}
        self._expiry: list[tuple[float, Uid]] = []
        self._changed = trio.Event()
        # Change log: every change with revision > _log_floor is in _log (oldest first).
        self._log: list[Change] = []
        self._log_floor = 0
        self._log_retention = DEFAULT_CHANGE_RETENTION
        self._pending: list[tuple[str, Entry]] = []

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = DEFAULT_CLOCK) -> Self:
        """Build from ``memory://`` (or ``memory:///``); the URL takes no options.

        Raises :class:`~tractor_reg.BackendURLError` naming the offending part if the URL
        has a host, a path, a query or a fragment, or is not a ``memory`` URL.
        """
        if not isinstance(url, str):
            raise BackendURLError(f"backend URL must be a str, got {url!r}")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise BackendURLError(f"malformed backend URL {url!r}: {exc}") from exc
        if parts.scheme != cls.scheme:
            raise BackendURLError(f"not a memory:// URL: {url!r}")
        if parts.netloc:
            raise BackendURLError(f"memory:// takes no host, got {parts.netloc!r} in {url!r}")
        if parts.path not in ("", "/"):
            raise BackendURLError(f"memory:// takes no path, got {parts.path!r} in {url!r}")
        if parts.query:
            raise BackendURLError(
                f"memory:// takes no query options, got {parts.query!r} in {url!r}"
            )
        if parts.fragment:
            raise BackendURLError(f"memory:// takes no fragment, got {parts.fragment!r} in {url!r}")
        return cls(clock=clock)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return f"<MemoryBackend {state} revision={self._revision} entries={len(self._entries)}>"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Mark the store usable. A second ``open`` raises :class:`BackendError`."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise BackendClosed("memory backend is closed")
        if self._opened:
            raise BackendError("memory backend is already opened")
        self._opened = True

    async def aclose(self) -> None:
        """Drop the table and wake every ``wait_changed`` caller (they raise
        :class:`BackendClosed`). Idempotent; closes even if the caller is cancelled."""
        if not self._closed:
            self._closed = True
            self._entries.clear()
            self._by_name.clear()
            self._owner.clear()
            self._expiry.clear()
            self._changed.set()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _check_usable(self) -> None:
        if self._closed:
            raise BackendClosed("memory backend is closed")
        if not self._opened:
            raise BackendClosed("memory backend not opened: await open() first")

    async def _enter(self) -> None:
        # Checkpoint *before* touching state so the synchronous body that follows runs
        # atomically, and a cancelled call has changed nothing.
        await trio.lowlevel.checkpoint()
        self._check_usable()

    async def _enter_read(self) -> None:
        # Reads change nothing, so a cancel point is enough: skipping the schedule point
        # saves a scheduler pass on the registrar's hottest path (every lookup).
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_usable()

    # -- internals ---------------------------------------------------------------------

    def _live(self, entry: Entry, now: float) -> bool:
        return now < entry.expires_at

    def _changed_now(self) -> None:
        self._revision += 1
        for kind, entry in self._pending:
            self._record(kind, entry, self._revision)
        self._pending.clear()
        self._changed.set()
        self._changed = trio.Event()

    def _record(self, kind: str, entry: Entry, revision: int) -> None:
        self._log.append(
            Change(
                kind=kind, revision=revision, name=entry.name, uuid=entry.uuid, addrs=entry.addrs
            )
        )
        if len(self._log) > 2 * self._log_retention:
            # Trim in bulk (amortised O(1)), never splitting a revision's changes.
            cut = len(self._log) - self._log_retention
            while cut < len(self._log) and self._log[cut].revision == self._log[cut - 1].revision:
                cut += 1
            self._log_floor = self._log[cut - 1].revision
            del self._log[:cut]

    def _push_expiry(self, entry: Entry, key: Uid) -> None:
        # ``key`` is the tuple the indexes already hold: sharing it saves a tuple an entry.
        heapq.heappush(self._expiry, (entry.expires_at, key))
        # renew() leaves stale heap items behind; rebuild before they dominate memory.
        if len(self._expiry) > 2 * len(self._entries) + 64:
            self._expiry = [(e.expires_at, uid) for uid, e in self._entries.items()]
            heapq.heapify(self._expiry)

    def _heap_top_current(self) -> tuple[float, Uid] | None:
        """Discard stale heap items; return the soonest real expiry, if any."""
        heap = self._expiry
        while heap:
            expires_at, uid = heap[0]
            entry = self._entries.get(uid)
            if entry is not None and entry.expires_at == expires_at:
                return heap[0]
            heapq.heappop(heap)
        return None

    def _any_expired(self, now: float) -> bool:
        top = self._heap_top_current()
        return top is not None and not now < top[0]

    def _name_newest(self, key: Uid) -> None:
        """Make ``key`` the newest uuid of its name."""
        name, uuid = key
        uuids = self._by_name.get(name)
        if uuids is None or uuids == uuid:
            self._by_name[name] = uuid
        elif isinstance(uuids, str):
            self._by_name[name] = {uuids: None, uuid: None}
        else:
            uuids.pop(uuid, None)
            uuids[uuid] = None

    def _name_drop(self, key: Uid) -> None:
        name, uuid = key
        uuids = self._by_name[name]
        if isinstance(uuids, str):
            del self._by_name[name]
            return
        del uuids[uuid]
        if len(uuids) == 1:
            self._by_name[name] = next(iter(uuids))

    def _newest_first(self, name: str) -> Iterable[str]:
        uuids = self._by_name.get(name)
        if uuids is None:
            return ()
        if isinstance(uuids, str):
            return (uuids,)
        return reversed(uuids)

    def _remove(self, uid: Uid) -> Entry:
        entry = self._entries.pop(uid)
        self._name_drop(uid)
        for addr in entry.addrs:
            if self._owner.get(addr) == uid:
                del self._owner[addr]
        return entry

    def _drop_addr(self, uid: Uid, addr: AddrTuple) -> Entry:
        """Take ``addr`` away from ``uid``; a uid left without addresses disappears.

        Returns the entry as it was before; the caller logs one change per uid per write
        (see :meth:`_log_losses`).
        """
        entry = self._entries[uid]
        rest = tuple(a for a in entry.addrs if a != addr)
        del self._owner[addr]
        if rest:
            # Plain assignment keeps the uid's position: losing an address is not a
            # (re-)registration, so its revision and order stay.
            self._entries[uid] = msgspec.structs.replace(entry, addrs=rest)
        else:
            self._remove(uid)
        return entry

    def _log_losses(self, before: dict[Uid, Entry]) -> None:
        """One change per uid that lost addresses in this write: its final state
        (``updated``) or its removal (``unregistered``, with the addresses it had)."""
        for uid, old in before.items():
            now = self._entries.get(uid)
            if now is not None:
                self._pending.append(("updated", now))
            else:
                self._pending.append(("unregistered", old))

    def _live_entry(self, uid: Uid, now: float) -> Entry | None:
        entry = self._entries.get(uid)
        if entry is None or not self._live(entry, now):
            return None
        return entry

    # -- replica API -------------------------------------------------------------------
    # Durable backends keep a MemoryBackend as their read view and feed it the changes
    # their store committed. These methods apply already-decided rows: no validation,
    # no revision bump of their own, no checkpoint.

    def apply_upsert(self, entry: Entry, change: tuple[str, int] | None = None) -> None:
        """Store ``entry`` as given. A higher revision than the stored one moves the uid
        to the newest position; an equal one (renew, lost address) keeps its place."""
        key = entry.uid
        old = self._entries.get(key)
        if old is not None:
            for addr in old.addrs:
                if self._owner.get(addr) == key:
                    del self._owner[addr]
        if old is not None and old.revision == entry.revision:
            self._entries[key] = entry
        else:
            self._entries.pop(key, None)
            self._entries[key] = entry
            self._name_newest(key)
        for addr in entry.addrs:
            self._owner[addr] = key
        self._push_expiry(entry, key)
        if change is not None:
            self._record(change[0], entry, change[1])

    def apply_delete(self, uid: Uid, change: tuple[str, int] | None = None) -> None:
        """Forget ``uid`` if present (recording ``change`` = (kind, revision) if given)."""
        if uid in self._entries:
            entry = self._remove(uid)
            if change is not None:
                self._record(change[0], entry, change[1])

    def apply_revision(self, revision: int) -> None:
        """Adopt the store's revision; waiters wake when it moved forward."""
        if revision > self._revision:
            self._revision = revision
            self._changed.set()
            self._changed = trio.Event()

    @property
    def current_revision(self) -> int:
        return self._revision

    def raw_entry(self, uid: Uid) -> Entry | None:
        """The stored entry of ``uid`` whether live or expired (for planning writes)."""
        return self._entries.get(uid)

    def raw_owner(self, addr: AddrTuple) -> Uid | None:
        return self._owner.get(addr)

    def raw_expired(self, now: float) -> list[Entry]:
        """Stored entries whose lease ended by ``now`` (without removing them)."""
        if not self._any_expired(now):
            return []
        return [e for e in self._entries.values() if not self._live(e, now)]

    def raw_entries(self) -> list[Entry]:
        return list(self._entries.values())

    def start_history(self, revision: int) -> None:
        """The change log begins at ``revision`` (after loading a snapshot taken there):
        ``changes_since`` for anything older raises :class:`ChangesExpired`."""
        self._log.clear()
        self._log_floor = max(self._log_floor, revision)

    def load_history(self, changes: Sequence[Change], floor: int) -> None:
        """Adopt ``changes`` (oldest first) as the change log, complete for every revision
        after ``floor`` up to the current one: what a store retained before this view
        loaded it, so watchers can resume across a restart."""
        self._log = list(changes[-self._log_retention :])
        if len(self._log) < len(changes):
            # Trimmed to the retention: complete only after the newest dropped revision.
            floor = max(floor, changes[-len(self._log) - 1].revision)
        self._log_floor = floor

    def reset(self) -> None:
        """Drop every entry (before a full reload); the revision is kept, the change log
        restarts there (watchers further back must resync)."""
        self._log.clear()
        self._log_floor = self._revision
        self._entries.clear()
        self._by_name.clear()
        self._owner.clear()
        self._expiry.clear()

    # -- writes ------------------------------------------------------------------------

    async def register(
        self,
        uid: Uid,
        addrs: Sequence[AddrTuple],
        ttl: float,
        *,
        registrar: str = "",
        owner: bytes = b"",
    ) -> Entry:
        """Upsert ``uid``; see the contract in :mod:`tractor_reg.backends._base`."""
        await self._enter()
        key = _check_uid(uid)
        new_addrs = _check_addrs(addrs)
        lease = _check_ttl(ttl)
        if not isinstance(registrar, str) or not _storable(registrar):
            _invalid(f"registrar must be a str of valid Unicode text, got {registrar!r}")
        owner = check_owner(owner, unowned=True)
        now = self._clock()
        expires_at = now + lease
        if not math.isfinite(expires_at):
            _invalid(f"ttl {ttl!r} is too large")
        current = self._live_entry(key, now)
        if current is not None and current.owner and not _same_owner(current, owner):
            _refuse("register_actor of", key)

        # Validation is over: nothing below may raise, so the write is all-or-nothing.
        old = self._entries.get(key)
        if old is not None and not self._live(old, now):
            self._remove(key)
            old = None
        losers: dict[Uid, Entry] = {}
        for addr in new_addrs:
            holder = self._owner.get(addr)
            if holder is not None and holder != key:
                previous = self._drop_addr(holder, addr)
                losers.setdefault(holder, previous)
        self._log_losses(losers)
        if old is None:
            kept: tuple[AddrTuple, ...] = ()
            registered_at = now
        else:
            moving = set(new_addrs)
            kept = tuple(a for a in old.addrs if a not in moving)
            registered_at = old.registered_at
        self._revision += 1
        entry = Entry(
            name=key[0],
            uuid=key[1],
            addrs=kept + new_addrs,
            revision=self._revision,
            registered_at=registered_at,
            expires_at=expires_at,
            registrar=sys.intern(str.__str__(registrar)),
            owner=owner,
        )
        # pop + insert moves the uid to the end of both orderings (newest revision last)
        self._entries.pop(key, None)
        self._entries[key] = entry
        self._name_newest(key)
        for addr in new_addrs:
            self._owner[addr] = key
        self._push_expiry(entry, key)
        # The revision was taken above (the entry carries it): stamp the changes with it.
        self._revision -= 1
        self._pending.append(("registered", entry))
        self._changed_now()
        return entry

    async def unregister(self, uid: Uid, *, owner: bytes | None = None) -> Entry | None:
        """Delete a live ``uid`` and return it; ``None`` (no change) if absent or expired
        (or unowned, when an ``owner`` is given)."""
        await self._enter()
        key = _check_uid(uid)
        if owner is not None:
            owner = check_owner(owner, unowned=False)
        current = self._live_entry(key, self._clock())
        if current is None:
            return None
        if owner is not None:
            if not current.owner:
                return None
            if not _same_owner(current, owner):
                _refuse("unregister_actor of", key)
        entry = self._remove(key)
        self._pending.append(("unregistered", entry))
        self._changed_now()
        return entry

    async def renew(self, uid: Uid, ttl: float, *, owner: bytes | None = None) -> Entry | None:
        """Set a live uid's ``expires_at`` to ``now + ttl``. Not a change: no revision bump.

        ``None`` if the uid is absent or expired (or unowned, when an ``owner`` is given).
        """
        await self._enter()
        key = _check_uid(uid)
        lease = _check_ttl(ttl)
        if owner is not None:
            owner = check_owner(owner, unowned=False)
        now = self._clock()
        expires_at = now + lease
        if not math.isfinite(expires_at):
            _invalid(f"ttl {ttl!r} is too large")
        entry = self._live_entry(key, now)
        if entry is None:
            return None
        if owner is not None:
            if not entry.owner:
                return None
            if not _same_owner(entry, owner):
                _refuse("renew_lease of", key)
        entry = msgspec.structs.replace(entry, expires_at=expires_at)
        self._entries[key] = entry
        self._push_expiry(entry, key)
        return entry

    async def delete_addr(self, addr: AddrTuple) -> Uid | None:
        """Remove ``addr`` from the live uid holding it and return that uid, else ``None``."""
        await self._enter()
        key = _check_addr(addr)
        owner = self._owner.get(key)
        if owner is None or self._live_entry(owner, self._clock()) is None:
            return None
        self._log_losses({owner: self._drop_addr(owner, key)})
        self._changed_now()
        return owner

    async def purge_expired(self) -> list[Entry]:
        """Delete every expired entry; return them in revision order (oldest first)."""
        await self._enter()
        now = self._clock()
        purged: list[Entry] = []
        while (top := self._heap_top_current()) is not None and not now < top[0]:
            heapq.heappop(self._expiry)
            purged.append(self._remove(top[1]))
        if purged:
            purged.sort(key=lambda e: e.revision)
            self._pending.extend(("expired", e) for e in purged)
            self._changed_now()
        return purged

    # -- reads -------------------------------------------------------------------------

    async def get(self, uid: Uid) -> Entry | None:
        """The live entry of ``uid``, or ``None``."""
        await self._enter_read()
        return self._live_entry(_check_uid(uid), self._clock())

    async def owner_of(self, addr: AddrTuple) -> Entry | None:
        """The live entry holding ``addr``, or ``None``."""
        await self._enter_read()
        owner = self._owner.get(_check_addr(addr))
        if owner is None:
            return None
        return self._live_entry(owner, self._clock())

    async def lookup(self, name: str) -> Entry | None:
        """The live entry of ``name`` with the highest revision, or ``None``.

        Walks the name's uids newest first, so the cost is one step plus one per
        expired-but-not-purged entry newer than the answer.
        """
        await self._enter_read()
        name = _check_name(name)
        now = self._clock()
        for uuid in self._newest_first(name):
            entry = self._entries[(name, uuid)]
            if self._live(entry, now):
                return entry
        return None

    async def lookup_all(self, name: str) -> list[Entry]:
        """Every live entry of ``name``, most recent first."""
        await self._enter_read()
        name = _check_name(name)
        now = self._clock()
        found = (self._entries[(name, uuid)] for uuid in self._newest_first(name))
        return [e for e in found if self._live(e, now)]

    async def entries(self) -> list[Entry]:
        """Every live entry, oldest revision first."""
        await self._enter_read()
        now = self._clock()
        return [e for e in self._entries.values() if self._live(e, now)]

    async def count(self) -> int:
        """The number of live entries (O(1) unless something expired is still stored)."""
        await self._enter_read()
        now = self._clock()
        if not self._any_expired(now):
            return len(self._entries)
        return sum(1 for e in self._entries.values() if self._live(e, now))

    async def revision(self) -> int:
        """The current store revision; 0 for a new store."""
        await self._enter_read()
        return self._revision

    async def refresh(self) -> None:
        """Nothing to do: this table is the store."""
        await self._enter_read()

    async def wait_changed(self, after: int) -> int:
        """Block until the store revision exceeds ``after`` and return it.

        Returns after one checkpoint if it already does. Cancellable. Raises
        :class:`BackendClosed` if the backend is closed while waiting.
        """
        await self._enter()
        if isinstance(after, bool) or not isinstance(after, int):
            _invalid(f"after must be an int revision, got {after!r}")
        while self._revision <= after:
            await self._changed.wait()
            self._check_usable()
        return self._revision

    async def changes_since(self, after: int, *, limit: int = 1000) -> list[Change]:
        """Changes at revisions greater than ``after``, oldest first (see the protocol)."""
        await self._enter_read()
        if isinstance(after, bool) or not isinstance(after, int):
            _invalid(f"after must be an int revision, got {after!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            _invalid(f"limit must be a positive int, got {limit!r}")
        if after < self._log_floor:
            raise ChangesExpired(
                f"changes after revision {after} are no longer kept (history starts after "
                f"revision {self._log_floor}); re-read the table and resume from its revision"
            )
        log = self._log
        lo, hi = 0, len(log)
        while lo < hi:  # first change with revision > after
            mid = (lo + hi) // 2
            if log[mid].revision <= after:
                lo = mid + 1
            else:
                hi = mid
        end = min(len(log), lo + limit)
        while end < len(log) and end > lo and log[end].revision == log[end - 1].revision:
            end += 1  # never split one revision's changes
        return log[lo:end]
