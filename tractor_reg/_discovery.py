"""Discovery: look actors up by name through the registrar and connect to them.

Every lookup first scans the peers this actor is already connected to, and only then asks
a registrar. Registrar connections are dialled once and reused across calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, overload

import trio

from ._actor import CONNECT_ERRORS, REGISTRY_ERRORS, Actor
from ._addr import Address, AddressLike, is_address_pair, prefer_addr, wrap_address
from ._exceptions import ActorNotFound, RegistryUnavailable
from ._ipc import Channel
from ._portal import LocalPortal, Portal
from ._state import current_actor

log = logging.getLogger("tractor_reg.discovery")

#: Seconds a registrar holds one wait_for_actor call before answering "not yet".
WAIT_POLL = 10.0


def _reg_addrs(actor: Actor, given: Sequence[AddressLike] | AddressLike | None) -> list[Address]:
    if given is None:
        return list(actor.reg_addrs)
    # One address (a string, path, multiaddr or pair) or a list of them.
    if not isinstance(given, tuple | list) or is_address_pair(given):
        return [wrap_address(given)]
    return [wrap_address(a) for a in given]


def _ask_order(
    actor: Actor, given: Sequence[AddressLike] | AddressLike | None
) -> list[tuple[Address, bool]]:
    """The registrars a lookup asks, in order, each with whether it is a fallback (it
    failed recently: asked only if none before it answered). See
    :meth:`Actor.registry_order`."""
    first, fallback = actor.registry_order(_reg_addrs(actor, given))
    return [(a, False) for a in first] + [(a, True) for a in fallback]


@asynccontextmanager
async def get_registry(addr: AddressLike | None = None) -> AsyncIterator[Portal | LocalPortal]:
    """A portal to the registrar at ``addr`` (default: this actor's first registry address).

    Inside the registrar itself this is a :class:`LocalPortal`. An existing connection to
    that address is reused.
    """
    actor = current_actor()
    target = wrap_address(addr) if addr is not None else actor.reg_addrs[0]
    try:
        portal = await actor.registry_portal(target)
    except CONNECT_ERRORS as exc:
        raise RegistryUnavailable(f"no registrar reachable at {target}: {exc}") from exc
    yield portal


async def _ask(actor: Actor, reg: Address, func: str, **kwargs: Any) -> Any:
    return await actor.registry_call(reg, func, **kwargs)


@asynccontextmanager
async def query_actor(
    name: str, regaddr: AddressLike | None = None
) -> AsyncIterator[tuple[Address | None, Portal | LocalPortal | None]]:
    """Look up the address of ``name`` without connecting to it.

    Yields ``(addr, reg_portal)``: ``addr`` is the best address (UDS > local TCP > remote
    TCP) or ``None``; ``reg_portal`` is the registrar portal used, or ``None`` when the
    actor was found among already-connected peers.
    """
    actor = current_actor()
    peer = actor.get_peer_by_name(name)
    if peer is not None and peer.aid.accept_addrs:
        yield prefer_addr(peer.aid.accept_addrs)[0], None
        return
    errors: list[str] = []
    for reg, _ in _ask_order(actor, regaddr):
        try:
            # The bounded call first: it dials (within call_timeout) and the portal
            # below reuses that connection.
            addrs = await actor.registry_call(reg, "find_actor", name=name)
            portal = await actor.registry_portal(reg)
        except CONNECT_ERRORS as exc:
            errors.append(f"{reg}: {exc}")
            continue
        yield (prefer_addr(addrs)[0] if addrs else None), portal
        return
    raise RegistryUnavailable("no registrar reachable: " + "; ".join(errors))


async def _connect_any(
    actor: Actor,
    reg: Address | None,
    addrs: Sequence[Any],
    transports: Sequence[str] | None,
    name: str,
) -> Channel | None:
    """Dial the best reachable address of actor ``name``; report stale ones.

    An address that answers as another actor (a dead actor's port reused by a new one)
    is stale too: it is reported like an unreachable one and never returned.
    """
    ranked = prefer_addr(addrs)
    if transports is not None:
        # A preference, as upstream (which never filters the target's addresses): the
        # enabled transports first, then the rest, so an actor listening only on other
        # transports (a UDS-only tree looked up with the default ['tcp']) is still found.
        ranked = [a for a in ranked if a.transport in transports] + [
            a for a in ranked if a.transport not in transports
        ]
    for addr in ranked:
        try:
            # "lookup": this connection lives as long as the caller's block; the peer
            # must not hand it to a lookup of its own (it may close under that one).
            chan = await actor.dial(addr, cache=False, lazy=True, role="lookup")
        except CONNECT_ERRORS as exc:
            log.info("%s unreachable (%s); reporting it to the registrar", addr, exc)
        else:
            if chan.aid.name == name:
                return chan
            log.info("%s answers as %r, not %r; reporting it", addr, chan.aid, name)
            await chan.aclose()
        if reg is not None:
            await _report_stale(actor, reg, addr)
    return None


async def _report_stale(actor: Actor, reg: Address, addr: Address) -> None:
    try:
        await _ask(actor, reg, "delete_addr", addr=list(addr))
    except REGISTRY_ERRORS as exc:
        log.debug("reporting %s to %s failed: %s", addr, reg, exc)


# The overloads give type checkers what the block yields for the usual calls:
# ``Portal | None``, ``Portal`` with ``raise_on_none=True``, ``list[Portal]`` with
# ``only_first=False``.
@overload
def find_actor(
    name: str,
    registry_addrs: Sequence[AddressLike] | None = None,
    enable_transports: Sequence[str] | None = ("tcp",),
    only_first: Literal[True] = True,
    *,
    raise_on_none: Literal[True],
) -> AbstractAsyncContextManager[Portal]: ...


@overload
def find_actor(
    name: str,
    registry_addrs: Sequence[AddressLike] | None = None,
    enable_transports: Sequence[str] | None = ("tcp",),
    only_first: Literal[True] = True,
    raise_on_none: bool = False,
) -> AbstractAsyncContextManager[Portal | None]: ...


@overload
def find_actor(
    name: str,
    registry_addrs: Sequence[AddressLike] | None = None,
    enable_transports: Sequence[str] | None = ("tcp",),
    *,
    only_first: Literal[False],
    raise_on_none: bool = False,
) -> AbstractAsyncContextManager[list[Portal]]: ...


@overload
def find_actor(
    name: str,
    registry_addrs: Sequence[AddressLike] | None = None,
    enable_transports: Sequence[str] | None = ("tcp",),
    only_first: bool = True,
    raise_on_none: bool = False,
) -> AbstractAsyncContextManager[Portal | list[Portal] | None]: ...


def find_actor(
    name: str,
    registry_addrs: Sequence[AddressLike] | None = None,
    enable_transports: Sequence[str] | None = ("tcp",),
    only_first: bool = True,
    raise_on_none: bool = False,
) -> AbstractAsyncContextManager[Portal | list[Portal] | None]:
    """Find actor(s) by name and yield connected portal(s).

    With ``only_first=True`` (default) yields a portal to the most recently registered
    live actor called ``name``, or ``None`` (or raises :class:`ActorNotFound` when
    ``raise_on_none``). With ``only_first=False`` yields a list with one portal per
    distinct actor, merged across every registrar. ``enable_transports`` says which
    address kinds are dialled first (the others are tried after them; ``None``: the
    ranking alone decides). Connections opened here are closed when
    the block exits.
    """
    return _find_actor(name, registry_addrs, enable_transports, only_first, raise_on_none)


@asynccontextmanager
async def _find_actor(
    name: str,
    registry_addrs: Sequence[AddressLike] | None,
    enable_transports: Sequence[str] | None,
    only_first: bool,
    raise_on_none: bool,
) -> AsyncIterator[Portal | list[Portal] | None]:
    actor = current_actor()
    owned: list[Channel] = []
    found: list[Channel] = []
    seen: set[tuple[str, str]] = set()
    transports = list(enable_transports) if enable_transports is not None else None

    if only_first:
        first = actor.get_peer_by_name(name)
        peers = [first] if first is not None else []
    else:
        peers = actor.peers_by_name(name)
    for peer in peers:
        seen.add(peer.aid.uid)
        found.append(peer)

    if not (only_first and found):
        reachable = 0
        for reg, fallback in _ask_order(actor, registry_addrs):
            if fallback and reachable:
                break  # it failed recently and another registrar answered
            try:
                if only_first:
                    addrs = await _ask(actor, reg, "find_actor", name=name)
                    candidates = [addrs] if addrs else []
                else:
                    candidates = [
                        e["addrs"] for e in await _ask(actor, reg, "find_actors", name=name)
                    ]
            except CONNECT_ERRORS as exc:
                log.info("registrar %s unreachable: %s", reg, exc)
                continue
            reachable += 1
            for addrs in candidates:
                chan = await _connect_any(actor, reg, addrs, transports, name)
                if chan is None:
                    continue
                if chan.aid.uid in seen:
                    await chan.aclose()
                    continue
                seen.add(chan.aid.uid)
                owned.append(chan)
                found.append(chan)
                if only_first:
                    break
            if only_first and found:
                break
        if not reachable and not found:
            raise RegistryUnavailable(
                f"no registrar reachable at {[str(a) for a in _reg_addrs(actor, registry_addrs)]}"
            )

    if not found and raise_on_none:
        raise ActorNotFound(f"no actor named {name!r} is registered")
    portals = [Portal(c, actor=actor) for c in found]
    try:
        if only_first:
            yield portals[0] if portals else None
        else:
            yield portals
    finally:
        with trio.CancelScope(shield=True):
            for chan in owned:
                await chan.aclose()


async def _wait_and_connect(actor: Actor, name: str, regs: list[Address]) -> Channel:
    while True:
        reachable = 0
        first, fallback = actor.registry_order(regs)
        for reg in first + fallback:
            try:
                # Long poll: a registrar that stops answering (SIGSTOP, half-open
                # connection) is noticed within one poll, and we fail over.
                addrs = await actor.registry_call(
                    reg,
                    "wait_for_actor",
                    name=name,
                    deadline=WAIT_POLL + actor.call_timeout,
                    poll=WAIT_POLL,
                )
            except CONNECT_ERRORS as exc:
                log.info("registrar %s unreachable while waiting: %s", reg, exc)
                continue
            reachable += 1
            if addrs is None:
                break  # nothing yet: ask again (the same registrar first)
            chan = await _connect_any(actor, reg, addrs, None, name)
            if chan is not None:
                return chan
        if not reachable:
            raise RegistryUnavailable(f"no registrar reachable at {[str(r) for r in regs]}")
        # Every address we were given was stale and has been reported; the registrar
        # verified and dropped it, so the next wait blocks until a fresh registration.
        await trio.sleep(0.05)


@asynccontextmanager
async def wait_for_actor(
    name: str,
    registry_addr: AddressLike | None = None,
    timeout: float | None = None,
) -> AsyncIterator[Portal]:
    """Wait until an actor called ``name`` is registered, then yield a portal to it.

    Registrars are asked in order; one that is unreachable (or drops the connection while
    we wait) is skipped over to the next. ``timeout`` bounds the wait, not the block
    (``TimeoutError``).
    """
    actor = current_actor()
    peer = actor.get_peer_by_name(name)
    if peer is not None:
        yield Portal(peer, actor=actor)
        return
    regs = _reg_addrs(actor, registry_addr)
    if timeout is None:
        chan = await _wait_and_connect(actor, name, regs)
    else:
        waited: Channel | None = None
        with trio.move_on_after(timeout):
            waited = await _wait_and_connect(actor, name, regs)
        if waited is None:
            raise TimeoutError(f"no actor named {name!r} registered within {timeout}s")
        chan = waited
    try:
        yield Portal(chan, actor=actor)
    finally:
        with trio.CancelScope(shield=True):
            await chan.aclose()
