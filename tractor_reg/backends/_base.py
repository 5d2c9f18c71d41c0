"""The storage interface the registrar delegates its table to.

Backends know nothing of actors, channels or IPC: they store *entries* keyed by a uid
``(name, uuid)`` with an ordered list of plain address tuples and a lease, and they
assign every change a store-wide, monotonically increasing *revision*.

Contract (checked for every backend by ``tests/backends/test_conformance.py``):

* ``register`` upserts a uid. New addresses are appended in the given order; an address
  the uid already had moves to the end (latest last). The entry's ``revision`` becomes a
  fresh store revision, so it is now the *most recent* registration of its name.
* An address belongs to at most one uid: registering it for a uid evicts it from every
  other uid, and a uid left with no addresses disappears.
* ``lookup(name)`` answers the live entry of that name with the highest ``revision``;
  wall clocks never decide "most recent".
* Leases: an entry whose ``expires_at`` is in the past (by the backend's clock) is
  invisible to every read and to ``renew``; ``purge_expired`` deletes such entries.
* Every change (register, unregister, delete_addr, purge that removed something) bumps
  the store revision and wakes ``wait_changed`` callers. ``renew`` only moves the lease
  and is not a change.
* Every write is atomic and is durable in the store when the call returns.
* Bad arguments raise :class:`~tractor_reg.InvalidRequest` and change nothing.
* Every change is also recorded as a :class:`Change` that ``changes_since`` returns,
  for a bounded window of recent revisions.
* Ownership: an entry records ``owner``, the SHA-256 digest of the lease token of whoever
  registered it (``b""``: unowned). A live owned entry accepts ``register`` only with
  the same ``owner``, and ``renew`` / ``unregister`` only with the same ``owner`` or
  with ``owner=None`` (an in-process, administrative call); anything else raises
  :class:`~tractor_reg.PermissionDenied` and changes nothing. An absent or expired
  entry is claimed afresh by any ``register``. An unowned live entry is adopted by the
  next ``register`` (which stores its ``owner``); ``renew`` / ``unregister`` with an
  ``owner`` treat it as absent (``None``). The check and the write are one atomic step
  in the store, so registrars sharing a store honour each other's owners.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import msgspec

#: ``(name, uuid)`` of an actor.
Uid: TypeAlias = tuple[str, str]
#: A transport address as a plain tuple: TCP ``(host, port)`` or UDS ``(directory, filename)``.
AddrTuple: TypeAlias = tuple[str, int] | tuple[str, str]
#: A wall-clock source in seconds; backends take one so tests can control time.
Clock: TypeAlias = Callable[[], float]

DEFAULT_CLOCK: Clock = time.time


# gc=False: an entry holds only strings, numbers and tuples of them, so it can never be
# part of a reference cycle; untracked, 100,000 of them cost the collector nothing.
class Entry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One registration as stored.

    ``addrs`` are in registration order, latest last. ``revision`` is the store revision of
    the entry's latest (re-)registration. ``registered_at`` / ``expires_at`` are wall-clock
    seconds from the backend's clock. ``registrar`` names the registrar that recorded it.
    ``owner`` is the SHA-256 digest of its owner's lease token (``b""``: unowned); the
    registrar never shows it to peers.
    """

    name: str
    uuid: str
    addrs: tuple[AddrTuple, ...]
    revision: int
    registered_at: float
    expires_at: float
    registrar: str = ""
    #: SHA-256 digest of the owner's lease token; ``b""`` for an unowned entry.
    owner: bytes = b""

    @property
    def uid(self) -> Uid:
        return (self.name, self.uuid)


#: Length of an ``owner`` digest (SHA-256).
OWNER_DIGEST_SIZE = 32


#: Kinds of :class:`Change`.
CHANGE_KINDS = ("registered", "updated", "unregistered", "expired")


class Change(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One visible change of the table, as watchers see it.

    ``kind`` is ``registered`` (a uid was (re-)registered), ``updated`` (it lost an
    address to another uid or to a verified stale report), ``unregistered`` (removed by
    its actor, an admin, or because it lost its last address) or ``expired`` (its lease
    ran out). ``revision`` is the store revision the change was made at (several changes
    of one atomic write share it); ``addrs`` are the addresses after the change (before
    it, for removals). Lease renewals are not changes.
    """

    kind: str
    revision: int
    name: str
    uuid: str
    addrs: tuple[AddrTuple, ...]

    @property
    def uid(self) -> Uid:
        return (self.name, self.uuid)


@runtime_checkable
class RegistryBackend(Protocol):
    """The typed async interface every storage backend implements.

    Lifecycle: construct (cheap, no I/O), ``await open()``, use, ``await aclose()``.
    A backend may also offer ``async def run(self) -> None``: background upkeep that the
    owner runs in a nursery while the backend is open and cancels before closing it
    (:func:`~tractor_reg.backends.opened_backend` does this). It is optional and not
    part of this protocol, so backends without upkeep need not define it.
    ``aclose`` is idempotent; any other call after it raises
    :class:`~tractor_reg.BackendClosed`. Driver failures are raised as
    :class:`~tractor_reg.BackendError` with the driver exception as ``__cause__``.
    """

    #: The URL scheme this backend was opened with (``"memory"``, ``"sqlite"``, ...).
    scheme: str

    async def open(self) -> None:
        """Connect / create the store. Must be called once before any other method."""

    async def aclose(self) -> None:
        """Release every resource (connections, threads). Idempotent."""

    async def register(
        self,
        uid: Uid,
        addrs: Sequence[AddrTuple],
        ttl: float,
        *,
        registrar: str = "",
        owner: bytes = b"",
    ) -> Entry:
        """Upsert ``uid`` with ``addrs`` (non-empty) and a lease of ``ttl`` seconds (> 0).

        Evicts each address from any other uid (dropping uids left empty), bumps the
        store revision and returns the stored entry. ``owner`` (a 32-byte digest, or
        ``b""``) must match a live owned entry's, else
        :class:`~tractor_reg.PermissionDenied`; the stored entry records it.
        """

    async def unregister(self, uid: Uid, *, owner: bytes | None = None) -> Entry | None:
        """Delete ``uid``; return the removed entry, or ``None`` if it was not there.

        With an ``owner``, only the entry's owner may (else
        :class:`~tractor_reg.PermissionDenied`); ``None`` removes it unconditionally.
        """

    async def renew(self, uid: Uid, ttl: float, *, owner: bytes | None = None) -> Entry | None:
        """Extend a live uid's lease to ``now + ttl``; ``None`` if unknown or expired.

        With an ``owner``, only the entry's owner may (else
        :class:`~tractor_reg.PermissionDenied`); ``None`` skips the check.
        """

    async def delete_addr(self, addr: AddrTuple) -> Uid | None:
        """Remove ``addr`` from whichever uid holds it; return that uid or ``None``."""

    async def get(self, uid: Uid) -> Entry | None:
        """The live entry of ``uid``, or ``None``."""

    async def owner_of(self, addr: AddrTuple) -> Entry | None:
        """The live entry that holds ``addr``, or ``None``."""

    async def lookup(self, name: str) -> Entry | None:
        """The most recently registered live entry named ``name``, or ``None``."""

    async def lookup_all(self, name: str) -> list[Entry]:
        """Every live entry named ``name``, most recent first."""

    async def entries(self) -> list[Entry]:
        """Every live entry, in revision order (oldest first)."""

    async def count(self) -> int:
        """The number of live entries."""

    async def purge_expired(self) -> list[Entry]:
        """Delete every expired entry and return them."""

    async def revision(self) -> int:
        """The store's current revision (0 for a new, empty store)."""

    async def wait_changed(self, after: int) -> int:
        """Block until the store revision is greater than ``after``; return it."""

    async def refresh(self) -> None:
        """Bring the reads up to date with the store now: every change any process had
        committed when this was called is visible to reads when it returns. A no-op
        for a backend whose reads are the store. Raises
        :class:`~tractor_reg.BackendError` when the store cannot be read."""

    async def changes_since(self, after: int, *, limit: int = 1000) -> list[Change]:
        """Changes made at revisions greater than ``after``, oldest first (at most
        ``limit``, but never splitting one revision's changes).

        Raises :class:`~tractor_reg.ChangesExpired` when the retained history no longer
        reaches back to ``after``: the caller must re-read the table and continue from
        its revision.
        """
