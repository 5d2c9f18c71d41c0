"""The registrar: an actor whose registry endpoints delegate to a storage backend."""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import trio

from . import _state
from ._actor import CONNECT_ERRORS, Actor
from ._addr import (
    Address,
    TCPAddress,
    check_uds_path,
    coerce_address,
    unwrap_address,
    wrap_address,
)
from ._exceptions import (
    ActorNotFound,
    BackendError,
    InvalidRequest,
    LimitExceeded,
    PeerRefused,
    PermissionDenied,
)
from ._ipc import Channel, _socket_of
from ._security import LEASE_TOKEN_SIZE
from .backends import Change, Entry, RegistryBackend

log = logging.getLogger("tractor_reg.registrar")

_PROBE_ERRORS: tuple[type[Exception], ...] = (*CONNECT_ERRORS, trio.TooSlowError, ValueError)

#: How often expired leases are purged from the store (seconds).
DEFAULT_PURGE_INTERVAL = 1.0
#: Deadline for verifying a reported-stale address (connect + handshake, seconds).
DEFAULT_PROBE_TIMEOUT = 1.0
#: The longest lease a registrar grants (seconds): an hour.
DEFAULT_MAX_LEASE_TTL = 3600.0
#: A pause of the registrar's event loop longer than this (seconds; SIGSTOP, swapping,
#: a paused VM) makes its next reads re-check the store before answering: meanwhile
#: other registrars sharing the store may have changed it, and the calls that queued up
#: during the pause would otherwise be answered from a view that old.
DEFAULT_STALL_THRESHOLD = 0.25
#: How often the registrar looks at its own clock to notice such a pause (seconds).
_STALL_TICK = 0.05
#: The longest a read waits for that re-check; past it (or if the store cannot be
#: read) it answers from the view, as during a store outage.
_REFRESH_LIMIT = 1.0


@dataclass(frozen=True)
class RegistryLimits:
    """Caps that keep one misbehaving peer from exhausting the registrar.

    ``max_entries``: live entries in the whole registry; ``max_entries_per_peer``: live
    entries registered from one peer host (counted as the connection limits count hosts:
    TCP by source address, Unix-socket peers by user id);
    ``max_addrs_per_uid``: addresses one uid may hold. Hitting one refuses the offending
    registration with :class:`LimitExceeded`; nothing else is affected.
    ``max_lease_ttl``: the longest lease (seconds) a registration or renewal is granted;
    a longer ask is granted this long (``register_actor`` answers the lease it granted),
    so an entry of a vanished peer can outlive it by this much at most.
    """

    max_entries: int = 1_000_000
    max_entries_per_peer: int = 100_000
    max_addrs_per_uid: int = 16
    max_lease_ttl: float = DEFAULT_MAX_LEASE_TTL

    def __post_init__(self) -> None:
        ttl = self.max_lease_ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
            raise ValueError(f"max_lease_ttl must be a positive number of seconds, got {ttl!r}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check_uid(uid: object) -> tuple[str, str]:
    if (
        not isinstance(uid, list | tuple)
        or len(uid) != 2
        or not all(isinstance(part, str) and part for part in uid)
    ):
        raise InvalidRequest(f"uid must be a pair of non-empty strings (name, uuid), got {uid!r}")
    return (uid[0], uid[1])


def _check_addrs(addr: object) -> list[Address]:
    """One address or a list of addresses, each a TCP or UDS pair."""
    if isinstance(addr, list | tuple) and len(addr) == 2 and not isinstance(addr[0], list | tuple):
        candidates: list[object] = [addr]
    elif isinstance(addr, list | tuple):
        candidates = list(addr)
    else:
        raise InvalidRequest(f"addr must be an address or a list of addresses, got {addr!r}")
    if not candidates:
        raise InvalidRequest("at least one address is required")
    wrapped = []
    for candidate in candidates:
        if isinstance(candidate, str):
            raise InvalidRequest(
                f"addresses travel as (host, port) / (dir, file) pairs, not strings: {candidate!r}"
            )
        try:
            addr = coerce_address(candidate)
            _check_dialable(addr)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        wrapped.append(addr)
    return wrapped


def _check_dialable(addr: Address) -> None:
    """Refuse addresses nobody could ever connect to (they would break every probe)."""
    if isinstance(addr, TCPAddress):
        host = addr.host
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            return
        except ValueError:
            pass
        try:
            encoded = host.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"{host!r} is neither an IP address nor a valid host name") from exc
        if not encoded or len(encoded) > 253:
            raise ValueError(f"host name {host!r} has an invalid length")
    else:
        check_uds_path(addr)


def _check_token(token: object, *, optional: bool) -> bytes | None:
    """A lease token: exactly ``LEASE_TOKEN_SIZE`` bytes (or ``None`` where optional)."""
    if token is None and optional:
        return None
    if type(token) is not bytes or len(token) != LEASE_TOKEN_SIZE:
        shape = (
            f"{len(token)} bytes" if isinstance(token, bytes | bytearray) else type(token).__name__
        )
        raise InvalidRequest(
            f"token must be the {LEASE_TOKEN_SIZE}-byte lease token register_actor returned"
            + (" (or None for a first registration)" if optional else "")
            + f", got {shape}"
        )
    return token


def _owner_of_token(token: bytes) -> bytes:
    """What the store keeps of a lease token: its SHA-256 digest (tokens are 256 random
    bits, so a plain hash cannot be searched back to the token)."""
    return hashlib.sha256(token).digest()


def _check_token_required(token: object) -> bytes:
    checked = _check_token(token, optional=False)
    assert checked is not None
    return checked


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"name must be a non-empty str, got {name!r}")
    return name


def _check_ttl(ttl: object, default: float, cap: float) -> float:
    """The lease to grant for an asked ``ttl``: ``default`` when none, never over ``cap``."""
    if ttl is None:
        return min(default, cap)
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise InvalidRequest(f"ttl must be a positive number of seconds, got {ttl!r}")
    return min(float(ttl), cap)


def _wire_addrs(entry: Entry) -> list[list[Any]]:
    return [list(a) for a in entry.addrs]


def _entry_doc(e: Entry) -> dict[str, Any]:
    return {
        "name": e.name,
        "uuid": e.uuid,
        "addrs": _wire_addrs(e),
        "revision": e.revision,
        "registered_at": e.registered_at,
        "expires_at": e.expires_at,
        "registrar": e.registrar,
    }


def _change_doc(c: Change) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "revision": c.revision,
        "name": c.name,
        "uuid": c.uuid,
        "addrs": [list(a) for a in c.addrs],
    }


class Registrar(Actor):
    """The actor that keeps the registry: ``(name, uuid)`` -> addresses, with leases.

    Every read and write goes to its :class:`~tractor_reg.backends.RegistryBackend`.
    Peers call its endpoints with ``portal.run_from_ns('self', NAME, **kwargs)``.
    """

    is_registrar: ClassVar[bool] = True
    SELF_ENDPOINTS: ClassVar[frozenset[str]] = Actor.SELF_ENDPOINTS | {
        "register_actor",
        "unregister_actor",
        "renew_lease",
        "find_actor",
        "find_actors",
        "wait_for_actor",
        "get_registry",
        "list_entries",
        "delete_addr",
        "snapshot",
        "watch_changes",
        "stats",
        "remove",
    }
    INLINE_ENDPOINTS: ClassVar[frozenset[str]] = Actor.INLINE_ENDPOINTS | {
        # Reads: every backend answers them from memory without blocking.
        "find_actor",
        "find_actors",
        "get_registry",
        "list_entries",
        "snapshot",
        "stats",
    }

    def __init__(
        self,
        name: str,
        *,
        backend: RegistryBackend,
        purge_interval: float = DEFAULT_PURGE_INTERVAL,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
        limits: RegistryLimits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self.limits = limits or RegistryLimits()
        # uids registered per peer host, to enforce max_entries_per_peer
        self._by_peer: dict[str, set[tuple[str, str]]] = {}
        self.backend = backend
        self.purge_interval = purge_interval
        self.probe_timeout = probe_timeout
        self.started_at = time.time()
        self.lookups = 0
        self.registrations = 0
        self.waiters = 0
        # (monotonic time, lookups, registrations) samples for the rates in stats()
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque(maxlen=11)
        #: Pause of the event loop (seconds) after which reads re-check the store.
        self.stall_threshold = DEFAULT_STALL_THRESHOLD
        # When the stall watchdog last ran, and whether a pause was seen since the last
        # re-check of the store began.
        self._last_tick = time.monotonic()
        self._stalled = False
        self._refreshing: trio.Event | None = None
        #: Pauses noticed so far (for tests and operators).
        self.stalls = 0

    async def _after_bind(self, service: trio.Nursery) -> None:
        exposed = [
            a for a in self.accept_addrs if isinstance(a, TCPAddress) and not _is_loopback(a.host)
        ]
        if exposed and self.security.secret is None:
            log.warning(
                "!!! registrar listening on %s WITHOUT a shared secret: anyone who can reach "
                "it can register names, remove entries and read the registry. Configure a "
                "secret (secret=..., TRACTOR_REG_SECRET_FILE, tractor-reg serve --secret-file) "
                "or listen on loopback only !!!",
                ", ".join(str(a) for a in exposed),
            )
        service.start_soon(self._purge_loop)
        service.start_soon(self._watch_stalls)
        await super()._after_bind(service)

    # -- pauses of this process ----------------------------------------------------------

    async def _watch_stalls(self) -> None:
        """Notice when this process did not run for a while, and re-check the store."""
        self._last_tick = time.monotonic()
        while True:
            await trio.sleep(_STALL_TICK)
            if self._stall_suspected():
                await self._current_view()
            self._last_tick = time.monotonic()

    def _stall_suspected(self) -> bool:
        # The clock check catches a pause before the watchdog ran again: after SIGCONT,
        # a queued call may be served before the watchdog's timer is.
        # (During a re-check the clock says nothing: a slow store is not a pause.)
        paused = time.monotonic() - self._last_tick
        if (
            paused > _STALL_TICK + self.stall_threshold
            and not self._stalled
            and self._refreshing is None
        ):
            self._stalled = True
            self.stalls += 1
            # INFO: a busy event loop looks the same as a stopped process from here.
            log.info("this registrar did not run for %.1f s; re-checking the store", paused)
        return self._stalled

    async def _current_view(self) -> None:
        """Return once reads reflect the store, if this process was paused since the
        last re-check (at once otherwise). One re-check serves every caller waiting."""
        while True:
            if self._refreshing is not None:
                # Calls that arrive during a re-check wait for it, paused or not: it
                # only runs after a pause, and they may have queued up during it.
                await self._refreshing.wait()
                continue
            if not self._stall_suspected():
                return
            done = self._refreshing = trio.Event()
            # A pause noticed from here on needs a re-check that starts after it.
            self._stalled = False
            try:
                with trio.move_on_after(_REFRESH_LIMIT) as scope:
                    await self.backend.refresh()
                if scope.cancelled_caught:
                    log.warning(
                        "re-checking the store took over %.1f s; answering from the view",
                        _REFRESH_LIMIT,
                    )
            except BackendError as exc:
                log.warning("re-checking the store failed (%s); answering from the view", exc)
            finally:
                self._last_tick = time.monotonic()
                self._refreshing = None
                done.set()
            return

    async def _purge_loop(self) -> None:
        while True:
            await trio.sleep(self.purge_interval)
            self._sample()
            try:
                purged = await self.backend.purge_expired()
            except BackendError as exc:
                # The store is down or busy: lookups go on from the view; purge later.
                log.warning("purging expired leases failed: %s", exc)
                continue
            for entry in purged:
                log.info("lease expired: %s %s %s", entry.name, entry.uuid, list(entry.addrs))

    def _caller(self) -> Channel | None:
        return _state.current_channel.get()

    def _may_force(self) -> bool:
        """Whether the caller may remove live entries without owning them: the
        registrar's own process, a peer on one of its (owner-only) Unix sockets, or, when
        a shared secret is configured, a peer that proved it holds the secret."""
        chan = self._caller()
        if chan is None or self.security.secret is not None:
            return True
        sock = _socket_of(chan.stream)
        return sock is not None and sock.family == socket.AF_UNIX

    async def _refuse_foreign(self, uid: tuple[str, str], owner: bytes, what: str) -> None:
        """Refuse a write to a live entry owned by another token before any costly
        check; the store checks again atomically with the write."""
        current = await self.backend.get(uid)
        if current is not None and current.owner and not hmac.compare_digest(current.owner, owner):
            raise PermissionDenied(
                f"{what} {uid[0]!r} ({uid[1]}): the entry belongs to whoever registered it; "
                "the lease token presented does not match"
            )

    # -- endpoints -----------------------------------------------------------------------

    async def register_actor(
        self, uid: object, addr: object, ttl: object = None, token: object = None
    ) -> dict[str, Any]:
        """Register ``uid`` at ``addr`` (one address or a list, all in one atomic write).

        A registration is owned by its lease token. Without ``token`` the registrar
        issues a fresh one; a live entry of ``uid`` owned by another token refuses the
        call with ``PermissionDenied``. An absent or expired entry is claimed by any
        token. Returns ``{"revision": int, "ttl": float, "token": bytes}``: ``ttl`` is the
        lease granted (the asked one, capped at ``limits.max_lease_ttl``); the token
        renews, changes and unregisters the entry, over any connection.
        """
        key = _check_uid(uid)
        addrs = _check_addrs(addr)
        lease = _check_ttl(ttl, self.lease_ttl, self.limits.max_lease_ttl)
        presented = _check_token(token, optional=True)
        lease_token = secrets.token_bytes(LEASE_TOKEN_SIZE) if presented is None else presented
        owner = _owner_of_token(lease_token)
        await self._refuse_foreign(key, owner, "register_actor of")
        await self._enforce_limits(key, addrs)
        await self._refuse_live_address_theft(key, addrs)
        entry = await self.backend.register(
            key,
            [unwrap_address(a) for a in addrs],
            lease,
            registrar=self._registrar_id(),
            owner=owner,
        )
        self.registrations += 1
        peer = self._peer_host()
        if peer is not None:
            self._by_peer.setdefault(peer, set()).add(key)
        return {"revision": entry.revision, "ttl": lease, "token": lease_token}

    def _peer_host(self) -> str | None:
        chan = self._caller()
        if chan is None:
            return None  # the registrar itself
        return chan.host  # as the connection limits count it

    async def _enforce_limits(self, uid: tuple[str, str], addrs: list[Address]) -> None:
        limits = self.limits
        existing = await self.backend.get(uid)
        merged = set(addrs) | {wrap_address(a) for a in (existing.addrs if existing else ())}
        if len(merged) > limits.max_addrs_per_uid:
            raise LimitExceeded(
                f"{uid[0]!r} would hold {len(merged)} addresses; the limit is "
                f"{limits.max_addrs_per_uid} per uid"
            )
        if existing is not None:
            return  # a re-registration adds no entry
        if await self.backend.count() >= limits.max_entries:
            raise LimitExceeded(f"the registry is full ({limits.max_entries} entries)")
        peer = self._peer_host()
        if peer is None:
            return
        mine = self._by_peer.get(peer)
        if mine is not None and len(mine) >= limits.max_entries_per_peer:
            # Forget uids that are gone (unregistered, expired, evicted) before judging.
            for other in list(mine):
                if await self.backend.get(other) is None:
                    mine.discard(other)
            if len(mine) >= limits.max_entries_per_peer:
                raise LimitExceeded(
                    f"peer {peer} already registered {len(mine)} live entries; the limit is "
                    f"{limits.max_entries_per_peer} per peer"
                )

    async def _refuse_live_address_theft(self, uid: tuple[str, str], addrs: list[Address]) -> None:
        """An address held by another uid moves only if that uid no longer answers at it.

        Eviction is how an actor restarted on the same port reclaims its address; without
        this check any peer could evict a healthy actor by claiming its address.
        """
        for addr in addrs:
            owner = await self.backend.owner_of(unwrap_address(addr))
            if owner is None or owner.uid == uid:
                continue
            if await self._verify_alive(addr, owner.uid):
                raise PermissionDenied(
                    f"address {addr} belongs to live actor {owner.name!r} ({owner.uuid}); "
                    "it answers there, so it cannot be taken over"
                )

    async def unregister_actor(self, uid: object, token: object) -> bool:
        """Remove ``uid``; only the holder of its lease ``token`` may (else
        ``PermissionDenied``). ``True`` if it was registered."""
        key = _check_uid(uid)
        owner = _owner_of_token(_check_token_required(token))
        return await self.backend.unregister(key, owner=owner) is not None

    async def renew_lease(self, uid: object, token: object, ttl: object = None) -> bool:
        """Extend the lease of ``uid`` (capped as in :meth:`register_actor`) for the holder
        of its lease ``token`` (another token: ``PermissionDenied``); ``False`` tells the
        caller to register again."""
        key = _check_uid(uid)
        owner = _owner_of_token(_check_token_required(token))
        lease = _check_ttl(ttl, self.lease_ttl, self.limits.max_lease_ttl)
        return await self.backend.renew(key, lease, owner=owner) is not None

    async def find_actor(self, name: object) -> list[list[Any]] | None:
        """Addresses of the most recently registered live actor named ``name``, or ``None``."""
        await self._current_view()
        self.lookups += 1
        entry = await self.backend.lookup(_check_name(name))
        return None if entry is None else _wire_addrs(entry)

    async def find_actors(self, name: object) -> list[dict[str, Any]]:
        """Every live actor named ``name``, most recent first: ``{"uid", "addrs"}`` each."""
        await self._current_view()
        self.lookups += 1
        entries = await self.backend.lookup_all(_check_name(name))
        return [{"uid": list(e.uid), "addrs": _wire_addrs(e)} for e in entries]

    async def wait_for_actor(self, name: object, poll: object = None) -> list[list[Any]] | None:
        """Block until an actor named ``name`` is registered; return its addresses.

        With ``poll`` (seconds) answer ``None`` when nothing appeared by then, so that
        clients can tell a slow wait from a registrar that stopped answering.
        """
        key = _check_name(name)
        if poll is not None:
            if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll <= 3600:
                raise InvalidRequest(f"poll must be 0 < seconds <= 3600, got {poll!r}")
            with trio.move_on_after(float(poll)):
                return await self.wait_for_actor(key)
            return None
        self.lookups += 1
        self.waiters += 1
        try:
            await self._current_view()
            while True:
                revision = await self.backend.revision()
                entry = await self.backend.lookup(key)
                if entry is not None:
                    return _wire_addrs(entry)
                await self.backend.wait_changed(revision)
        finally:
            self.waiters -= 1

    async def get_registry(self) -> dict[str, list[list[Any]]]:
        """The whole live table as ``{"name.uuid": [addr, ...]}``."""
        await self._current_view()
        return {f"{e.name}.{e.uuid}": _wire_addrs(e) for e in await self.backend.entries()}

    async def list_entries(self) -> list[dict[str, Any]]:
        """Every live entry with its lease and revision (for operators' tools)."""
        await self._current_view()
        return [_entry_doc(e) for e in await self.backend.entries()]

    async def snapshot(self) -> dict[str, Any]:
        """The live table and the revision it is current at (to start a watch from)."""
        await self._current_view()
        revision = await self.backend.revision()
        return {"revision": revision, "entries": await self.list_entries()}

    async def watch_changes(
        self, since: object = None, name: object = None, timeout: object = 30.0
    ) -> dict[str, Any]:
        """Changes after revision ``since`` (default: now), optionally only of ``name``.

        Blocks until there is at least one (or ``timeout`` seconds passed) and returns
        ``{"revision": R, "changes": [...]}``: the caller has seen everything up to ``R``
        and resumes with ``since=R``. Raises ``ChangesExpired`` when ``since`` is older
        than the retained history.
        """
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            raise InvalidRequest(f"since must be a revision (int) or None, got {since!r}")
        if name is not None:
            name = _check_name(name)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not (0 < timeout <= 3600)
        ):
            raise InvalidRequest(f"timeout must be 0 < seconds <= 3600, got {timeout!r}")
        await self._current_view()
        after = await self.backend.revision() if since is None else since
        self.waiters += 1
        try:
            with trio.move_on_after(float(timeout)):
                while True:
                    changes = await self.backend.changes_since(after)
                    if changes:
                        after = changes[-1].revision
                        matching = [c for c in changes if name is None or c.name == name]
                        if matching:
                            return {
                                "revision": after,
                                "changes": [_change_doc(c) for c in matching],
                            }
                        continue
                    await self.backend.wait_changed(after)
        finally:
            self.waiters -= 1
        return {"revision": after, "changes": []}

    def _sample(self) -> None:
        self._samples.append((time.monotonic(), self.lookups, self.registrations))

    async def stats(self) -> dict[str, Any]:
        """Counters and health for operators (``tractor-reg stats``)."""
        self._sample()
        first, last = self._samples[0], self._samples[-1]
        span = last[0] - first[0]
        healthy = getattr(self.backend, "healthy", True)
        return {
            "name": self.name,
            "uuid": self.uuid,
            "pid": self.pid,
            "addrs": [str(a) for a in self.accept_addrs],
            "uptime": time.time() - self.started_at,
            "backend": self.backend.scheme,
            "backend_healthy": bool(healthy),
            "revision": await self.backend.revision(),
            "entries": await self.backend.count(),
            "lookups": self.lookups,
            "registrations": self.registrations,
            "lookups_per_s": (last[1] - first[1]) / span if span > 0 else 0.0,
            "registrations_per_s": (last[2] - first[2]) / span if span > 0 else 0.0,
            "waiters": self.waiters,
        }

    async def remove(self, target: object, force: object = False) -> list[dict[str, Any]]:
        """Admin removal of the entries named ``target`` (or the one whose uuid it is).

        Unless ``force``, an entry is only removed after the registrar verified that
        none of its addresses answers as that actor (as for a stale report). ``force``
        removes live entries without their owners' tokens, so it is allowed only from
        the registrar's own process, over its Unix socket, or (with a shared secret
        configured) to authenticated peers: anyone else gets ``PermissionDenied``.
        Raises ``ActorNotFound`` when nothing matches.
        """
        if not isinstance(target, str) or not target:
            raise InvalidRequest(f"target must be a name or uuid, got {target!r}")
        if not isinstance(force, bool):
            raise InvalidRequest(f"force must be a bool, got {force!r}")
        if force and not self._may_force():
            raise PermissionDenied(
                "a forced removal needs the registrar's Unix socket, or a shared secret "
                "configured on the registrar; over TCP without a secret only a verified "
                "removal (without force) is allowed"
            )
        matches = [e for e in await self.backend.entries() if target in (e.name, e.uuid)]
        if not matches:
            raise ActorNotFound(f"no registered actor has the name or uuid {target!r}")
        results: list[dict[str, Any]] = []
        for entry in matches:
            alive = False
            if not force:
                for addr in entry.addrs:
                    if await self._verify_alive(wrap_address(addr), entry.uid):
                        alive = True
                        break
            if alive:
                results.append(
                    {
                        "name": entry.name,
                        "uuid": entry.uuid,
                        "removed": False,
                        "reason": "it answers at its address (use force to remove it anyway)",
                    }
                )
                continue
            removed = await self.backend.unregister(entry.uid)
            results.append(
                {
                    "name": entry.name,
                    "uuid": entry.uuid,
                    "removed": removed is not None,
                    "reason": "forced" if force else "verified unreachable",
                }
            )
            log.warning(
                "admin removed %s %s (%s)",
                entry.name,
                entry.uuid,
                "forced" if force else "verified unreachable",
            )
        return results

    async def delete_addr(self, addr: object) -> bool:
        """A client reports ``addr`` unreachable: verify, and delete it only if it is stale.

        The registrar probes the address itself (connect + handshake). A healthy actor that
        answers with the uid that holds the address is kept. ``True`` if deleted.
        """
        addrs = _check_addrs(addr)
        if len(addrs) != 1:
            raise InvalidRequest("delete_addr takes exactly one address")
        target = addrs[0]
        plain = unwrap_address(target)
        owner = await self.backend.owner_of(plain)
        if owner is None:
            return False
        if await self._verify_alive(target, owner.uid):
            log.info("kept %s: %s answers at it", target, owner.uid)
            return False
        deleted = await self.backend.delete_addr(plain)
        log.info("deleted stale address %s of %s", target, deleted)
        return deleted is not None

    async def _verify_alive(self, addr: Address, uid: tuple[str, str]) -> bool:
        if addr in self.accept_addrs:
            return uid == self.uid
        try:
            with trio.fail_after(self.probe_timeout * 2):
                chan = await self.connect_channel(addr, self.probe_timeout)
        except PeerRefused as exc:
            # Something alive answers there (a full actor refusing connections: which a
            # peer can bring about by taking its slots). Only silence, a refused connect
            # or another uid makes an address stale.
            log.info("%s refused the liveness probe (%s); keeping it", addr, exc.type_name)
            return True
        except _PROBE_ERRORS:
            return False
        try:
            return chan.aid.uid == uid
        finally:
            await chan.aclose()

    def _registrar_id(self) -> str:
        first = self.accept_addrs[0] if self.accept_addrs else None
        return f"{self.name}@{first}" if first is not None else self.name
