"""The RegistryBackend contract, run against every backend in ``conftest.BACKEND_URLS``.

Time is a :class:`~tests.backends.conftest.FakeClock`; cross-task waits use events and
``wait_all_tasks_blocked``, never sleeps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from tractor_reg._exceptions import BackendClosed, BackendError, InvalidRequest, PermissionDenied
from tractor_reg.backends import Entry, RegistryBackend, open_backend

from .conftest import FakeClock

A1 = ("127.0.0.1", 1001)
A2 = ("127.0.0.1", 1002)
A3 = ("127.0.0.1", 1003)
UDS = ("/run/tractor", "actor.sock")
TTL = 30.0

U1 = ("alpha", "u1")
U2 = ("alpha", "u2")
U3 = ("alpha", "u3")
B1 = ("beta", "b1")


def uids(entries: list[Entry]) -> list[tuple[str, str]]:
    return [e.uid for e in entries]


async def snapshot(backend: RegistryBackend) -> tuple[int, list[Entry]]:
    return await backend.revision(), await backend.entries()


# -- register / get / lookup ---------------------------------------------------------------


async def test_new_store_is_empty(backend: RegistryBackend) -> None:
    assert await backend.revision() == 0
    assert await backend.count() == 0
    assert await backend.entries() == []
    assert await backend.lookup("alpha") is None
    assert await backend.lookup_all("alpha") == []
    assert await backend.get(U1) is None
    assert await backend.owner_of(A1) is None


async def test_register_get_lookup(backend: RegistryBackend, clock: FakeClock) -> None:
    entry = await backend.register(U1, [A1, UDS], TTL, registrar="reg-1")
    assert entry.uid == U1
    assert (entry.name, entry.uuid) == U1
    assert entry.addrs == (A1, UDS)
    assert entry.registered_at == clock.now
    assert entry.expires_at == clock.now + TTL
    assert entry.registrar == "reg-1"
    assert entry.revision == await backend.revision()

    assert await backend.get(U1) == entry
    assert await backend.lookup("alpha") == entry
    assert await backend.lookup_all("alpha") == [entry]
    assert await backend.entries() == [entry]
    assert await backend.count() == 1
    assert await backend.owner_of(A1) == entry
    assert await backend.owner_of(UDS) == entry
    assert await backend.lookup("beta") is None


async def test_registrar_defaults_to_empty(backend: RegistryBackend) -> None:
    entry = await backend.register(U1, [A1], TTL)
    assert entry.registrar == ""


async def test_lists_are_normalised_to_tuples(backend: RegistryBackend) -> None:
    uid: Any = ["alpha", "u1"]
    addrs: Any = [["h", 1], ["/d", "f"]]
    entry = await backend.register(uid, addrs, 5)
    assert entry.uid == U1
    assert type(entry.addrs) is tuple
    assert entry.addrs == (("h", 1), ("/d", "f"))
    assert all(type(a) is tuple for a in entry.addrs)
    assert await backend.get(U1) == entry
    assert await backend.owner_of(("h", 1)) == entry
    assert await backend.get(["alpha", "u1"]) == entry  # type: ignore[arg-type]
    assert await backend.owner_of(["h", 1]) == entry  # type: ignore[arg-type]


async def test_duplicates_in_one_call_collapse(backend: RegistryBackend) -> None:
    entry = await backend.register(U1, [A1, A2, A1], TTL)
    # as if registered one after the other: the repeated address moves to the end
    assert entry.addrs == (A2, A1)
    assert await backend.owner_of(A1) == entry


async def test_tcp_and_uds_with_same_first_element_are_distinct(
    backend: RegistryBackend,
) -> None:
    await backend.register(U1, [("x", 1)], TTL)
    await backend.register(U2, [("x", "1")], TTL)
    tcp_owner = await backend.owner_of(("x", 1))
    uds_owner = await backend.owner_of(("x", "1"))
    assert tcp_owner is not None and tcp_owner.uid == U1
    assert uds_owner is not None and uds_owner.uid == U2


# -- ordering by store revision ------------------------------------------------------------


async def test_lookup_answers_highest_revision(backend: RegistryBackend) -> None:
    e1 = await backend.register(U1, [A1], TTL)
    e2 = await backend.register(U2, [A2], TTL)
    e3 = await backend.register(U3, [A3], TTL)
    assert e1.revision < e2.revision < e3.revision
    assert await backend.lookup("alpha") == e3
    assert uids(await backend.lookup_all("alpha")) == [U3, U2, U1]
    assert uids(await backend.entries()) == [U1, U2, U3]


async def test_reregistering_older_uid_makes_it_most_recent(
    backend: RegistryBackend, clock: FakeClock
) -> None:
    await backend.register(U1, [A1], TTL)
    await backend.register(U2, [A2], TTL)
    await backend.register(B1, [A3], TTL)
    # the wall clock going backwards must not matter: revisions decide
    clock.advance(-500)
    again = await backend.register(U1, [A1], TTL)
    assert again.revision == await backend.revision()
    assert await backend.lookup("alpha") == again
    assert uids(await backend.lookup_all("alpha")) == [U1, U2]
    assert uids(await backend.entries()) == [U2, B1, U1]


async def test_lookup_all_only_that_name(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1], TTL)
    await backend.register(B1, [A2], TTL)
    await backend.register(U2, [A3], TTL)
    assert uids(await backend.lookup_all("alpha")) == [U2, U1]
    assert uids(await backend.lookup_all("beta")) == [B1]
    assert await backend.lookup_all("gamma") == []


# -- revisions -----------------------------------------------------------------------------


async def test_revision_bumped_by_every_change(backend: RegistryBackend) -> None:
    seen = [await backend.revision()]

    async def bumped() -> int:
        rev = await backend.revision()
        assert rev > seen[-1]
        seen.append(rev)
        return rev

    e1 = await backend.register(U1, [A1, A2], TTL)
    assert e1.revision == await bumped()
    e1b = await backend.register(U1, [A3], TTL)
    assert e1b.revision == await bumped()
    assert await backend.delete_addr(A2) == U1
    await bumped()
    assert await backend.unregister(U1) is not None
    await bumped()


async def test_revision_not_bumped_by_non_changes(
    backend: RegistryBackend, clock: FakeClock
) -> None:
    entry = await backend.register(U1, [A1], TTL)
    rev = await backend.revision()

    clock.advance(1)
    renewed = await backend.renew(U1, 100)
    assert renewed is not None
    assert renewed.revision == entry.revision
    assert await backend.unregister(U2) is None
    assert await backend.delete_addr(A2) is None
    assert await backend.renew(U2, 5) is None
    assert await backend.purge_expired() == []
    await backend.get(U1)
    await backend.lookup("alpha")
    await backend.lookup_all("alpha")
    await backend.entries()
    await backend.count()
    await backend.owner_of(A1)
    assert await backend.revision() == rev


async def test_evicted_entry_keeps_its_revision(backend: RegistryBackend) -> None:
    e1 = await backend.register(U1, [A1, A2], TTL)
    await backend.register(U2, [A2], TTL)
    after = await backend.get(U1)
    assert after is not None
    assert after.revision == e1.revision
    assert after.addrs == (A1,)
    assert uids(await backend.entries()) == [U1, U2]


# -- address ownership ---------------------------------------------------------------------


async def test_address_moves_to_new_uid(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1, A2], TTL)
    e2 = await backend.register(B1, [A2], TTL)
    assert await backend.owner_of(A2) == e2
    e1 = await backend.get(U1)
    assert e1 is not None
    assert e1.addrs == (A1,)
    assert (await backend.owner_of(A1)) == e1


async def test_uid_left_empty_disappears(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1], TTL)
    e2 = await backend.register(U2, [A1], TTL)
    assert await backend.get(U1) is None
    assert await backend.lookup_all("alpha") == [e2]
    assert await backend.count() == 1
    assert await backend.owner_of(A1) == e2
    assert await backend.unregister(U1) is None


async def test_one_register_can_evict_from_several_uids(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1], TTL)
    await backend.register(U2, [A2, UDS], TTL)
    e3 = await backend.register(B1, [A1, A2], TTL)
    assert await backend.get(U1) is None
    e2 = await backend.get(U2)
    assert e2 is not None
    assert e2.addrs == (UDS,)
    assert await backend.owner_of(A1) == e3
    assert await backend.owner_of(A2) == e3
    assert await backend.count() == 2


async def test_reregistration_appends_and_moves(backend: RegistryBackend, clock: FakeClock) -> None:
    first = await backend.register(U1, [A1, A2], TTL, registrar="r1")
    clock.advance(5)
    again = await backend.register(U1, [A3, A1], 60, registrar="r2")
    assert again.addrs == (A2, A3, A1)
    assert again.registered_at == first.registered_at
    assert again.expires_at == clock.now + 60
    assert again.registrar == "r2"
    assert again.revision > first.revision
    for addr in (A1, A2, A3):
        assert await backend.owner_of(addr) == again
    # re-registering an address it already has, alone, just moves it last
    assert (await backend.register(U1, [A2], TTL)).addrs == (A3, A1, A2)


# -- unregister / delete_addr --------------------------------------------------------------


async def test_unregister(backend: RegistryBackend) -> None:
    e1 = await backend.register(U1, [A1, A2], TTL)
    e2 = await backend.register(U2, [A3], TTL)
    assert await backend.unregister(U1) == e1
    assert await backend.get(U1) is None
    assert await backend.owner_of(A1) is None
    assert await backend.owner_of(A2) is None
    assert await backend.lookup("alpha") == e2
    assert await backend.unregister(U1) is None
    assert await backend.unregister(U2) == e2
    assert await backend.lookup("alpha") is None
    assert await backend.count() == 0
    # freed addresses can be taken again
    assert (await backend.register(B1, [A1], TTL)).addrs == (A1,)


async def test_delete_addr(backend: RegistryBackend) -> None:
    e1 = await backend.register(U1, [A1, A2], TTL)
    assert await backend.delete_addr(A1) == U1
    left = await backend.get(U1)
    assert left is not None
    assert left.addrs == (A2,)
    assert left.revision == e1.revision
    assert await backend.owner_of(A1) is None
    assert await backend.delete_addr(A1) is None
    assert await backend.delete_addr(A2) == U1
    assert await backend.get(U1) is None
    assert await backend.count() == 0


# -- leases --------------------------------------------------------------------------------


async def test_expired_entries_are_invisible(backend: RegistryBackend, clock: FakeClock) -> None:
    await backend.register(U1, [A1], 10)
    keep = await backend.register(B1, [A2], 100)
    clock.advance(9.5)
    assert await backend.get(U1) is not None
    clock.advance(0.5)  # now == expires_at: the lease is over
    assert await backend.get(U1) is None
    assert await backend.lookup("alpha") is None
    assert await backend.lookup_all("alpha") == []
    assert await backend.entries() == [keep]
    assert await backend.count() == 1
    assert await backend.owner_of(A1) is None
    assert await backend.renew(U1, 10) is None
    # writes ignore it too, and leave it for purge_expired
    assert await backend.unregister(U1) is None
    assert await backend.delete_addr(A1) is None


async def test_lookup_skips_expired_newer_entries(
    backend: RegistryBackend, clock: FakeClock
) -> None:
    e1 = await backend.register(U1, [A1], 100)
    e2 = await backend.register(U2, [A2], 50)
    await backend.register(U3, [A3], 10)
    clock.advance(20)
    assert await backend.lookup("alpha") == e2
    assert await backend.lookup_all("alpha") == [e2, e1]
    clock.advance(40)
    assert await backend.lookup("alpha") == e1
    assert await backend.lookup_all("alpha") == [e1]


async def test_purge_expired(backend: RegistryBackend, clock: FakeClock) -> None:
    e1 = await backend.register(U1, [A1], 10)
    keep = await backend.register(U2, [A2], 100)
    e3 = await backend.register(B1, [A3, UDS], 5)
    assert await backend.purge_expired() == []
    clock.advance(10)
    rev = await backend.revision()
    purged = await backend.purge_expired()
    assert sorted(uids(purged)) == sorted([U1, B1])
    assert {e.uid: e for e in purged} == {U1: e1, B1: e3}
    assert await backend.revision() > rev
    assert await backend.purge_expired() == []
    assert await backend.entries() == [keep]
    # a purged uid is really gone: re-registering it starts a fresh entry
    clock.advance(1)
    fresh = await backend.register(U1, [A1], 10)
    assert fresh.registered_at == clock.now
    assert fresh.addrs == (A1,)


async def test_renew_extends_lease(backend: RegistryBackend, clock: FakeClock) -> None:
    entry = await backend.register(U1, [A1], 10)
    clock.advance(8)
    renewed = await backend.renew(U1, 10)
    assert renewed is not None
    assert renewed.expires_at == clock.now + 10
    assert renewed.revision == entry.revision
    assert renewed.addrs == entry.addrs
    assert renewed.registered_at == entry.registered_at
    clock.advance(8)  # past the original expiry, inside the renewed one
    assert await backend.get(U1) == renewed
    assert await backend.purge_expired() == []
    clock.advance(2)
    assert await backend.get(U1) is None
    assert uids(await backend.purge_expired()) == [U1]


async def test_register_addr_of_expired_entry(backend: RegistryBackend, clock: FakeClock) -> None:
    await backend.register(U1, [A1], 1)
    clock.advance(2)
    e2 = await backend.register(B1, [A1], TTL)
    assert await backend.owner_of(A1) == e2
    assert await backend.count() == 1
    # the expired uid lost its only address, so it is gone and nothing is left to purge
    assert U1 not in uids(await backend.purge_expired())


async def test_reregister_expired_uid_starts_fresh(
    backend: RegistryBackend, clock: FakeClock
) -> None:
    await backend.register(U1, [A1, A2], 1)
    clock.advance(2)
    fresh = await backend.register(U1, [A3], TTL)
    assert fresh.addrs == (A3,)
    assert fresh.registered_at == clock.now
    assert await backend.owner_of(A1) is None
    assert await backend.purge_expired() == []
    assert await backend.entries() == [fresh]


# -- wait_changed --------------------------------------------------------------------------


async def _prepare_nothing(backend: RegistryBackend, clock: FakeClock) -> None:
    pass


async def _prepare_u1(backend: RegistryBackend, clock: FakeClock) -> None:
    await backend.register(U1, [A1, A2], 5)


async def _do_register(backend: RegistryBackend, clock: FakeClock) -> None:
    await backend.register(U1, [A1], TTL)


async def _do_unregister(backend: RegistryBackend, clock: FakeClock) -> None:
    assert await backend.unregister(U1) is not None


async def _do_delete_addr(backend: RegistryBackend, clock: FakeClock) -> None:
    assert await backend.delete_addr(A2) == U1


async def _do_purge(backend: RegistryBackend, clock: FakeClock) -> None:
    clock.advance(10)
    assert uids(await backend.purge_expired()) == [U1]


Step = Callable[[RegistryBackend, FakeClock], Awaitable[None]]


@pytest.mark.parametrize(
    ("prepare", "change"),
    [
        pytest.param(_prepare_nothing, _do_register, id="register"),
        pytest.param(_prepare_u1, _do_unregister, id="unregister"),
        pytest.param(_prepare_u1, _do_delete_addr, id="delete_addr"),
        pytest.param(_prepare_u1, _do_purge, id="purge_expired"),
    ],
)
async def test_wait_changed_wakes_on_change(
    backend: RegistryBackend, clock: FakeClock, prepare: Step, change: Step
) -> None:
    await prepare(backend, clock)
    before = await backend.revision()
    woke: list[int] = []

    async def waiter() -> None:
        woke.append(await backend.wait_changed(before))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []
            await change(backend, clock)
    assert woke == [await backend.revision()]
    assert woke[0] > before


async def test_wait_changed_wakes_all_waiters(backend: RegistryBackend) -> None:
    before = await backend.revision()
    woke: list[int] = []

    async def waiter() -> None:
        woke.append(await backend.wait_changed(before))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await backend.register(U1, [A1], TTL)
    assert len(woke) == 5
    assert all(rev > before for rev in woke)


async def test_wait_changed_ignores_renew(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1], TTL)
    before = await backend.revision()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.wait_changed, before)
            await trio.testing.wait_all_tasks_blocked()
            assert await backend.renew(U1, 100) is not None
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught


async def test_wait_changed_returns_at_once_when_past(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1], TTL)
    await backend.register(U2, [A2], TTL)
    rev = await backend.revision()
    with trio.fail_after(5):
        assert await backend.wait_changed(rev - 1) == rev
        assert await backend.wait_changed(0) == rev
        assert await backend.wait_changed(-1) == rev


async def test_wait_changed_is_cancellable(backend: RegistryBackend) -> None:
    rev = await backend.revision()
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(backend.wait_changed, rev)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        assert scope.cancelled_caught
        # the backend is still fully usable after a cancelled wait
        await backend.register(U1, [A1], TTL)
        assert await backend.wait_changed(rev) == await backend.revision()


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrent_registers_and_unregisters_stay_consistent(
    backend: RegistryBackend,
) -> None:
    rng = random.Random(1234)
    pool = [("10.0.0.1", 2000 + i) for i in range(60)]
    names = ["alpha", "beta", "gamma"]
    jobs = [
        ((names[i % 3], f"u{i}"), rng.sample(pool, rng.randint(1, 4)), rng.random() < 0.25)
        for i in range(200)
    ]

    async def job(uid: tuple[str, str], addrs: list[tuple[str, int]], drop: bool) -> None:
        await backend.register(uid, addrs, TTL)
        if drop:
            await trio.sleep(0)
            await backend.unregister(uid)

    async def unregister_some() -> None:
        for i in range(0, 200, 7):
            await backend.unregister((names[i % 3], f"u{i}"))
            await trio.sleep(0)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for uid, addrs, drop in jobs:
                nursery.start_soon(job, uid, addrs, drop)
            nursery.start_soon(unregister_some)

    entries = await backend.entries()
    assert await backend.count() == len(entries)
    assert len({e.uid for e in entries}) == len(entries)
    revisions = [e.revision for e in entries]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == len(revisions)
    assert await backend.revision() >= max(revisions, default=0)

    held: list[tuple[str, int] | tuple[str, str]] = [a for e in entries for a in e.addrs]
    assert len(held) == len(set(held)), "an address is owned by two uids"
    for entry in entries:
        assert entry.addrs, "an entry without addresses survived"
        for addr in entry.addrs:
            assert await backend.owner_of(addr) == entry
    for addr in set(pool) - set(held):
        assert await backend.owner_of(addr) is None
    for name in names:
        mine = [e for e in entries if e.name == name]
        assert await backend.lookup_all(name) == mine[::-1]
        assert await backend.lookup(name) == (mine[-1] if mine else None)


# -- bad input -----------------------------------------------------------------------------


class Liar(str):
    """A str subclass that claims to be plain ASCII text."""

    def isascii(self) -> bool:
        return True

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"fine"


BAD_UIDS: list[Any] = [
    None,
    "alpha",
    ("alpha",),
    ("alpha", "u1", "x"),
    ("", "u1"),
    ("alpha", ""),
    (1, "u1"),
    ("alpha", 1),
    ("alpha", None),
    ["alpha"],
    {"alpha": "u1"},
    ("alpha\ud800", "u1"),  # a lone surrogate: no store can encode it
    ("alpha", "\udfff"),
    (Liar("alpha\ud800"), "u1"),
]

BAD_ADDRS: list[Any] = [
    [],
    (),
    None,
    "127.0.0.1:1",
    ("127.0.0.1", 1),  # one address instead of a sequence of them
    ["127.0.0.1:1"],
    [("127.0.0.1",)],
    [("127.0.0.1", 1, 2)],
    [(1, 2)],
    [(None, 2)],
    [("h", -1)],
    [("h", 65536)],
    [("h", True)],
    [("h", False)],
    [("h", 1.5)],
    [("h", "")],
    [("h", None)],
    [("h", b"sock")],
    [A1, ("h", -1)],  # one bad address spoils the whole call
    [A1, "oops"],
    [("h\ud800", 1)],
    [("/tmp", "s\ud800.sock")],
    [(Liar("h\ud800"), 1)],
]

BAD_ADDR: list[Any] = [
    None,
    "127.0.0.1:1",
    ("127.0.0.1",),
    ("127.0.0.1", 1, 2),
    (1, 2),
    (None, 2),
    ("h", -1),
    ("h", 65536),
    ("h", True),
    ("h", 1.5),
    ("h", ""),
    ("h", None),
    [("h", 1)],
]

BAD_TTLS: list[Any] = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "5", None]


def _bad_calls() -> list[Any]:
    calls: list[Any] = []
    for i, uid in enumerate(BAD_UIDS):
        calls += [
            pytest.param("register", (uid, [A3], TTL), {}, id=f"register-uid{i}"),
            pytest.param("unregister", (uid,), {}, id=f"unregister-uid{i}"),
            pytest.param("renew", (uid, TTL), {}, id=f"renew-uid{i}"),
            pytest.param("get", (uid,), {}, id=f"get-uid{i}"),
        ]
    for i, addrs in enumerate(BAD_ADDRS):
        calls.append(pytest.param("register", (U1, addrs, TTL), {}, id=f"register-addrs{i}"))
        calls.append(pytest.param("register", (U3, addrs, TTL), {}, id=f"register-new-addrs{i}"))
    for i, addr in enumerate(BAD_ADDR):
        calls.append(pytest.param("delete_addr", (addr,), {}, id=f"delete_addr{i}"))
        calls.append(pytest.param("owner_of", (addr,), {}, id=f"owner_of{i}"))
    for i, ttl in enumerate(BAD_TTLS):
        calls.append(pytest.param("register", (U1, [A3], ttl), {}, id=f"register-ttl{i}"))
        calls.append(pytest.param("register", (U3, [A3], ttl), {}, id=f"register-new-ttl{i}"))
        calls.append(pytest.param("renew", (U1, ttl), {}, id=f"renew-ttl{i}"))
    calls += [
        pytest.param("register", (U1, [A3], 10**400), {}, id="register-ttl-overflow"),
        pytest.param("register", (U1, [A3], TTL), {"registrar": 5}, id="register-registrar"),
        pytest.param(
            "register", (U1, [A3], TTL), {"registrar": "r\ud800"}, id="register-registrar-text"
        ),
        pytest.param("lookup", (None,), {}, id="lookup-none"),
        pytest.param("lookup", (("alpha",),), {}, id="lookup-tuple"),
        pytest.param("lookup", ("",), {}, id="lookup-empty"),
        pytest.param("lookup_all", (1,), {}, id="lookup_all-int"),
        pytest.param("lookup_all", ("",), {}, id="lookup_all-empty"),
        pytest.param("wait_changed", ("1",), {}, id="wait_changed-str"),
        pytest.param("wait_changed", (True,), {}, id="wait_changed-bool"),
        pytest.param("wait_changed", (None,), {}, id="wait_changed-none"),
    ]
    return calls


@pytest.mark.parametrize(("method", "args", "kwargs"), _bad_calls())
async def test_bad_input_raises_and_changes_nothing(
    backend: RegistryBackend, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    await backend.register(U1, [A1, A2], TTL)
    await backend.register(B1, [UDS], TTL)
    before = await snapshot(backend)
    with trio.fail_after(5), pytest.raises(InvalidRequest):
        await getattr(backend, method)(*args, **kwargs)
    assert await snapshot(backend) == before


async def test_a_bad_write_fails_alone_in_a_concurrent_batch(backend: RegistryBackend) -> None:
    """Writes arriving together share a batch (durable backends commit it as one
    transaction): an invalid one gets its InvalidRequest, the others are stored."""
    good = [(f"svc{i}", f"u{i}") for i in range(8)]
    results: dict[Any, Any] = {}

    async def one(uid: Any, addr: Any) -> None:
        try:
            results[uid] = await backend.register(uid, [addr], TTL)
        except InvalidRequest as exc:
            results[uid] = exc

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i, uid in enumerate(good):
                nursery.start_soon(one, uid, ("127.0.0.1", 41000 + i))
            nursery.start_soon(one, ("bad\ud800", "x"), ("127.0.0.1", 41100))
    assert isinstance(results[("bad\ud800", "x")], InvalidRequest)
    assert sorted(e.uid for e in await backend.entries()) == sorted(good)
    for uid in good:
        assert results[uid] == await backend.get(uid)


# -- lifecycle -----------------------------------------------------------------------------

ALL_CALLS: list[Any] = [
    pytest.param("register", (U1, [A1], TTL), id="register"),
    pytest.param("unregister", (U1,), id="unregister"),
    pytest.param("renew", (U1, TTL), id="renew"),
    pytest.param("delete_addr", (A1,), id="delete_addr"),
    pytest.param("get", (U1,), id="get"),
    pytest.param("owner_of", (A1,), id="owner_of"),
    pytest.param("lookup", ("alpha",), id="lookup"),
    pytest.param("lookup_all", ("alpha",), id="lookup_all"),
    pytest.param("entries", (), id="entries"),
    pytest.param("count", (), id="count"),
    pytest.param("purge_expired", (), id="purge_expired"),
    pytest.param("revision", (), id="revision"),
    pytest.param("wait_changed", (0,), id="wait_changed"),
    pytest.param("open", (), id="open"),
]


@pytest.mark.parametrize(("method", "args"), ALL_CALLS)
async def test_use_after_aclose_raises(
    backend: RegistryBackend, method: str, args: tuple[Any, ...]
) -> None:
    await backend.register(U1, [A1], TTL)
    await backend.aclose()
    with trio.fail_after(5), pytest.raises(BackendClosed):
        await getattr(backend, method)(*args)


@pytest.mark.parametrize(("method", "args"), [p for p in ALL_CALLS if p.id != "open"])
async def test_use_before_open_raises(
    backend_url: str, clock: FakeClock, method: str, args: tuple[Any, ...]
) -> None:
    unopened = open_backend(backend_url, clock=clock)
    try:
        with trio.fail_after(5), pytest.raises(BackendError):
            await getattr(unopened, method)(*args)
    finally:
        await unopened.aclose()


async def test_aclose_is_idempotent(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1], TTL)
    await backend.aclose()
    await backend.aclose()
    with pytest.raises(BackendClosed):
        await backend.count()


async def test_aclose_wakes_waiters_with_backend_closed(backend: RegistryBackend) -> None:
    rev = await backend.revision()
    raised: list[BaseException] = []

    async def waiter() -> None:
        try:
            await backend.wait_changed(rev)
        except BackendClosed as exc:
            raised.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await backend.aclose()
    assert len(raised) == 1


async def test_aclose_completes_when_cancelled(backend: RegistryBackend) -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await backend.aclose()
    with pytest.raises(BackendClosed):
        await backend.count()


async def test_scheme_matches_url(backend: RegistryBackend, backend_url: str) -> None:
    assert backend_url.startswith(f"{backend.scheme}:")
    assert isinstance(backend, RegistryBackend)


# -- the change log -------------------------------------------------------------------------


async def test_changes_since_records_every_visible_change(
    backend: RegistryBackend, clock: FakeClock
) -> None:
    start = await backend.revision()
    a = await backend.register(("svc", "a"), [("127.0.0.1", 1), ("127.0.0.1", 2)], 10)
    b = await backend.register(("svc", "b"), [("127.0.0.1", 2)], 10)  # evicts addr 2 from a
    await backend.renew(("svc", "b"), 20)  # not a change
    await backend.delete_addr(("127.0.0.1", 1))  # a loses its last address
    await backend.register(("tmp", "c"), [("127.0.0.1", 3)], 1)
    await backend.unregister(("svc", "b"))
    await backend.register(("tmp", "d"), [("127.0.0.1", 4)], 1)
    clock.advance(5)
    await backend.purge_expired()
    changes = await backend.changes_since(start)
    kinds = [(c.kind, c.uuid) for c in changes]
    assert kinds == [
        ("registered", "a"),
        ("updated", "a"),
        ("registered", "b"),
        ("unregistered", "a"),
        ("registered", "c"),
        ("unregistered", "b"),
        ("registered", "d"),
        ("expired", "c"),
        ("expired", "d"),
    ] or sorted(kinds) == sorted(
        [
            ("registered", "a"),
            ("updated", "a"),
            ("registered", "b"),
            ("unregistered", "a"),
            ("registered", "c"),
            ("unregistered", "b"),
            ("registered", "d"),
            ("expired", "c"),
            ("expired", "d"),
        ]
    )
    revisions = [c.revision for c in changes]
    assert revisions == sorted(revisions)
    assert revisions[-1] == await backend.revision()
    assert changes[0].addrs == a.addrs
    updated = next(c for c in changes if c.kind == "updated")
    assert updated.addrs == (("127.0.0.1", 1),)
    assert next(c for c in changes if c.uuid == "b" and c.kind == "registered").addrs == b.addrs


async def test_changes_since_resumes_and_limits(backend: RegistryBackend) -> None:
    start = await backend.revision()
    for i in range(5):
        await backend.register(("svc", f"u{i}"), [("127.0.0.1", 100 + i)], 10)
    first = await backend.changes_since(start, limit=2)
    assert [c.uuid for c in first] == ["u0", "u1"]
    rest = await backend.changes_since(first[-1].revision)
    assert [c.uuid for c in rest] == ["u2", "u3", "u4"]
    assert await backend.changes_since(await backend.revision()) == []


async def test_changes_since_rejects_bad_arguments(backend: RegistryBackend) -> None:
    for bad in ("1", None, 1.5, True):
        with pytest.raises(InvalidRequest):
            await backend.changes_since(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await backend.changes_since(0, limit=0)


# -- ownership ---------------------------------------------------------------------------------

O1 = bytes([1]) * 32
O2 = bytes([2]) * 32


async def test_an_owned_entry_refuses_every_other_owner(backend: RegistryBackend) -> None:
    entry = await backend.register(U1, [A1], TTL, owner=O1)
    assert entry.owner == O1
    before = await snapshot(backend)
    refused: list[Callable[[], Awaitable[Any]]] = [
        lambda: backend.register(U1, [A2], TTL, owner=O2),
        lambda: backend.register(U1, [A1], TTL, owner=O2),
        lambda: backend.register(U1, [A2], TTL),  # unowned may not overwrite owned
        lambda: backend.renew(U1, TTL * 10, owner=O2),
        lambda: backend.unregister(U1, owner=O2),
    ]
    for attempt in refused:
        with pytest.raises(PermissionDenied, match="token"):
            await attempt()
        assert await snapshot(backend) == before
    # The owner may do all of it.
    renewed = await backend.renew(U1, TTL * 2, owner=O1)
    assert renewed is not None and renewed.owner == O1
    changed = await backend.register(U1, [A2], TTL, owner=O1)
    assert changed.addrs == (A1, A2) and changed.owner == O1
    assert await backend.unregister(U1, owner=O1) is not None
    assert await backend.get(U1) is None


async def test_an_expired_or_absent_entry_is_claimed_afresh(
    backend: RegistryBackend, clock: FakeClock
) -> None:
    await backend.register(U1, [A1], TTL, owner=O1)
    clock.advance(TTL + 1)
    claimed = await backend.register(U1, [A2], TTL, owner=O2)
    assert claimed.owner == O2 and claimed.addrs == (A2,)
    with pytest.raises(PermissionDenied):
        await backend.renew(U1, TTL, owner=O1)
    assert await backend.get(U1) == claimed
    assert await backend.unregister(U1, owner=O2) is not None
    # gone: anyone's registration is a fresh claim
    assert (await backend.register(U1, [A1], TTL, owner=O1)).owner == O1


async def test_an_unowned_entry_is_adopted_by_its_next_registration(
    backend: RegistryBackend,
) -> None:
    await backend.register(U1, [A1], TTL)
    before = await snapshot(backend)
    # renew / unregister with an owner treat it as absent: "register again"
    assert await backend.renew(U1, TTL, owner=O1) is None
    assert await backend.unregister(U1, owner=O1) is None
    assert await snapshot(backend) == before
    adopted = await backend.register(U1, [A2], TTL, owner=O1)
    assert adopted.owner == O1 and adopted.addrs == (A1, A2)
    with pytest.raises(PermissionDenied):
        await backend.register(U1, [A2], TTL, owner=O2)


async def test_writes_without_an_owner_are_administrative(backend: RegistryBackend) -> None:
    await backend.register(U1, [A1], TTL, owner=O1)
    renewed = await backend.renew(U1, TTL * 2)
    assert renewed is not None and renewed.owner == O1
    assert await backend.unregister(U1) is not None
    assert await backend.get(U1) is None


@pytest.mark.parametrize("owner", [b"", b"x" * 31, b"x" * 33, "x" * 32, bytearray(32), 7], ids=repr)
async def test_a_malformed_owner_is_invalid_and_changes_nothing(
    backend: RegistryBackend, owner: Any
) -> None:
    await backend.register(U1, [A1], TTL, owner=O1)
    before = await snapshot(backend)
    if owner != b"":  # b"" registers an unowned entry (refused here: U1 is owned)
        with pytest.raises(InvalidRequest, match="owner"):
            await backend.register(U2, [A2], TTL, owner=owner)
    with pytest.raises(InvalidRequest, match="owner"):
        await backend.renew(U1, TTL, owner=owner)
    with pytest.raises(InvalidRequest, match="owner"):
        await backend.unregister(U1, owner=owner)
    assert await snapshot(backend) == before
