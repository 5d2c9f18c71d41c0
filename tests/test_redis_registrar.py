"""Registrar processes sharing one real redis-server: high availability and Redis outages.

Every test starts its own ``redis-server`` on a free port (:mod:`tests.redis_servers`), two
``python -m tractor_reg serve`` processes on different ports over it (with a namespace of
the test's own), real joiner actors (:mod:`tests.rpc_targets.joiner`) and an in-test root
actor that looks things up through the registrars' endpoints. Crashes are SIGKILL, of a
registrar or of Redis itself.

Outages are bounded observation windows (:func:`always`: lookups must keep answering
throughout); everything else is awaited by what the processes say, with a deadline.
"""

from __future__ import annotations

import os
import signal
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any, TypeVar

import pytest
import trio

import tractor_reg
from tests.conftest import free_port
from tests.procs import (
    Proc,
    await_joiner,
    eventually,
    joiner_argv,
    joiner_ready,
    registrar_argv,
    spawn,
    stderr_tails,
    wait_ready,
)
from tests.redis_servers import REDIS_SERVER, RedisServer, start_standalone
from tests.rpc_targets.funcs import whoami
from tests.rpc_targets.hostile import client
from tractor_reg._msg import Return

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

#: How often a registrar re-reads the change stream when no notification arrives (s).
POLL = 0.2
#: Leases of the actors in the outage tests: short, so that healing is quick to observe.
TTL, RENEW = 2.0, 0.3
#: The registrars' own lease (they register in the store they serve, like any actor). Long
#: by default: a registrar's own renewals are writes, which would bring its view up to date
#: as a side effect and hide how it follows the other registrar's writes.
REGISTRAR_TTL = 60.0
#: Redis with every write on disk before it is acknowledged.
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")

T = TypeVar("T")
Addr = tractor_reg.TCPAddress


# -- processes ----------------------------------------------------------------------------


def redis_url(server: RedisServer, namespace: str) -> str:
    return (
        f"redis://127.0.0.1:{server.port}/0?namespace={namespace}&poll_interval={POLL}"
        "&connect_timeout=0.5&socket_timeout=0.5"
    )


def new_addr() -> Addr:
    return tractor_reg.TCPAddress("127.0.0.1", free_port())


@pytest.fixture
def namespace() -> str:
    return f"t-{uuidlib.uuid4().hex[:12]}"


@contextmanager
def redis_server(extra: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    """A redis-server of this test's own; ``server.kill()`` + ``server.start()`` restarts it
    on the same port and directory (with its data only if ``extra`` makes it persistent)."""
    server = start_standalone(extra=extra)
    try:
        yield server
    finally:
        server.stop()


def sigkill(proc: Proc) -> None:
    """SIGKILL ``proc``'s group and reap it (its pipes stay open for the drainer)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.popen.wait()


def serve_argv(url: str, addr: Addr, lease_ttl: float = REGISTRAR_TTL) -> list[str]:
    return registrar_argv(
        str(addr), extra=["--backend", url, "--lease-ttl", str(lease_ttl), "--name", "reg"]
    )


@contextmanager
def registrars(
    url: str, count: int = 2, lease_ttl: float = REGISTRAR_TTL
) -> Iterator[list[tuple[Addr, Proc]]]:
    """``count`` registrars on different ports over one Redis, up (READY) when yielded."""
    addrs = [new_addr() for _ in range(count)]
    with ExitStack() as stack:
        procs = [stack.enter_context(spawn(serve_argv(url, a, lease_ttl))) for a in addrs]
        for proc in procs:
            wait_ready(proc)
        yield list(zip(addrs, procs, strict=True))


# -- waiting and observing ----------------------------------------------------------------


async def always(
    what: str,
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    window: float,
    *procs: Proc,
) -> int:
    """Check ``ok(probe())`` again and again for ``window`` seconds; fail on the first miss.

    A bounded observation window (the property must hold throughout), not a wait for
    state. Returns how many observations were made.
    """
    start = trio.current_time()
    seen = 0
    while trio.current_time() < start + window:
        last = await probe()
        seen += 1
        if not ok(last):
            raise AssertionError(
                f"{what}: broken {trio.current_time() - start:.2f}s into a {window}s window "
                f"(observation {seen}); saw {last!r}{stderr_tails(procs)}"
            )
        await trio.sleep(0.05)
    return seen


def equals(want: object) -> Callable[[object], bool]:
    return lambda got: got == want


# -- asking the registrars ----------------------------------------------------------------


async def ask(reg: Addr, func: str, **kwargs: Any) -> Any:
    """Call a registrar endpoint from the in-test root."""
    async with tractor_reg.get_registry(reg) as portal:
        return await portal.run_from_ns("self", func, **kwargs)


async def register_self(reg: Addr, ttl: float = 5.0) -> dict[str, Any]:
    """The in-test root registers its own uid again, through ``reg``."""
    me = tractor_reg.current_actor()
    return await ask(  # type: ignore[no-any-return]
        reg, "register_actor", uid=list(me.uid), addr=[list(a) for a in me.accept_addrs], ttl=ttl
    )


async def refused(reg: Addr) -> str | None:
    """``None`` if a registration through ``reg`` is stored, else the error's type name."""
    try:
        await register_self(reg)
    except tractor_reg.RemoteActorError as exc:
        return exc.type_name
    return None


def uids_in(table: dict[str, Any], *, registrars: bool = False) -> set[tuple[str, str]]:
    """``(name, uuid)`` of a ``get_registry`` table (registrar entries left out unless asked)."""
    found = [key.split(".", 1) for key in table]
    return {(n, u) for n, u in found if registrars or n != "reg"}


def uids_of(entries: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """``(name, uuid)`` of ``list_entries`` (registrar entries left out)."""
    return {(e["name"], e["uuid"]) for e in entries if e["name"] != "reg"}


def check_integrity(entries: list[dict[str, Any]]) -> None:
    """No uid twice, no address owned by two entries, no entry without an address."""
    uids = [(e["name"], e["uuid"]) for e in entries]
    assert len(uids) == len(set(uids)), f"a uid is listed twice: {uids}"
    owners: dict[tuple[Any, ...], tuple[str, str]] = {}
    for e in entries:
        assert e["addrs"], f"entry without an address: {e}"
        for addr in e["addrs"]:
            key = tuple(addr)
            assert key not in owners, f"{key} is owned by {owners[key]} and {e['name']}.{e['uuid']}"
            owners[key] = (e["name"], e["uuid"])


def view_of(entries: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """What must agree between two registrars' views (renewals only move expires_at)."""
    return {(e["name"], e["uuid"], e["revision"], repr(e["addrs"])) for e in entries}


# -- 1. a registration through one registrar is found through the other -------------------


async def test_registration_through_one_is_found_through_the_other(namespace: str) -> None:
    with redis_server() as server, registrars(redis_url(server, namespace)) as regs:
        (a, proc_a), (b, proc_b) = regs
        with (
            spawn(joiner_argv("at-a", str(a))) as at_a,
            spawn(joiner_argv("at-b", str(b))) as at_b,
        ):
            uuid_a, addrs_a = joiner_ready(at_a)
            uuid_b, addrs_b = joiner_ready(at_b)
            with trio.fail_after(15):
                async with tractor_reg.open_root_actor(name="probe", registry_addrs=[a, b]):
                    for other, name, want in ((b, "at-a", addrs_a), (a, "at-b", addrs_b)):
                        await eventually(
                            f"{name} found through the other registrar's find_actor",
                            partial(ask, other, "find_actor", name=name),
                            equals(want),
                            5,
                            proc_a,
                            proc_b,
                        )
                    # ... and the client API, told to use only the other registrar, connects
                    for other, name, uuid in ((b, "at-a", uuid_a), (a, "at-b", uuid_b)):
                        async with tractor_reg.find_actor(
                            name, registry_addrs=[other], raise_on_none=True
                        ) as portal:
                            assert isinstance(portal, tractor_reg.Portal)
                            assert await portal.run(whoami) == [name, uuid]
                    for reg in (a, b):
                        table = await ask(reg, "get_registry")
                        assert {("at-a", uuid_a), ("at-b", uuid_b)} <= uids_in(table)


# -- 2. a wait on one registrar is woken by a registration through the other --------------


async def test_wait_on_one_is_woken_by_a_registration_through_the_other(namespace: str) -> None:
    with redis_server() as server, registrars(redis_url(server, namespace)) as regs:
        (a, _proc_a), (b, proc_b) = regs
        with trio.fail_after(15):
            async with tractor_reg.open_root_actor(name="waiter", registry_addrs=[a, b]):
                woken = trio.Event()
                got: list[Any] = []

                async def wait() -> None:
                    async with tractor_reg.wait_for_actor("late", registry_addr=b) as portal:
                        got.append(await portal.run(whoami))
                    woken.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(wait)
                    assert await ask(b, "find_actor", name="late") is None
                    # registers only through A; B learns of it from Redis
                    with spawn(joiner_argv("late", str(a))) as late:
                        uuid, _ = await await_joiner(late)
                        with trio.move_on_after(5):
                            await woken.wait()
                        assert woken.is_set(), (
                            "wait_for_actor on B was not woken by a registration through A; "
                            f"B stderr:\n{proc_b.stderr_tail()}"
                        )
                assert got == [["late", uuid]]


# -- 3. "latest registered" is the same whichever registrar answers ------------------------


async def test_latest_registered_is_the_same_through_both(namespace: str) -> None:
    with redis_server() as server, registrars(redis_url(server, namespace)) as regs:
        (a, proc_a), (b, proc_b) = regs
        with spawn(joiner_argv("x", str(a))) as x1:
            uuid1, addrs1 = joiner_ready(x1)  # registered (acknowledged) through A ...
            with spawn(joiner_argv("x", str(b))) as x2:
                uuid2, addrs2 = joiner_ready(x2)  # ... then x2 through B
                with trio.fail_after(15):
                    async with tractor_reg.open_root_actor(name="probe", registry_addrs=[a, b]):
                        for reg in (a, b):
                            await eventually(
                                f"x2 as the latest 'x' through {reg}",
                                partial(ask, reg, "find_actors", name="x"),
                                lambda found: (
                                    [e["uid"] for e in found] == [["x", uuid2], ["x", uuid1]]
                                ),
                                5,
                                proc_a,
                                proc_b,
                            )
                            assert await ask(reg, "find_actor", name="x") == addrs2
                            async with tractor_reg.find_actor(
                                "x", registry_addrs=[reg], raise_on_none=True
                            ) as portal:
                                assert isinstance(portal, tractor_reg.Portal)
                                assert await portal.run(whoami) == ["x", uuid2]
                        # one revision sequence in Redis, whichever registrar wrote
                        views = [view_of(await ask(reg, "list_entries")) for reg in (a, b)]
                        assert views[0] == views[1]
                        revision = {e[1]: e[2] for e in views[0] if e[0] == "x"}
                        assert revision[uuid1] < revision[uuid2], revision
                        assert addrs1 != addrs2


# -- 4 + 6. SIGKILL one registrar: everything carries on through the survivor ------------


async def test_sigkill_one_registrar_and_clients_carry_on_through_the_other(
    namespace: str,
) -> None:
    ttl, renew = 1.5, 0.3
    with (
        redis_server() as server,
        # short registrar leases: the dead registrar's own entry must end too
        registrars(redis_url(server, namespace), lease_ttl=2.0) as regs,
    ):
        (a, proc_a), (b, proc_b) = regs
        with spawn(joiner_argv("svc", str(a), str(b), ttl=ttl, renew=renew)) as svc:
            svc_uuid, svc_addrs = joiner_ready(svc)
            with trio.fail_after(20):
                async with tractor_reg.open_root_actor(
                    name="client", registry_addrs=[a, b], lease_ttl=ttl, renew_interval=renew
                ) as me:

                    async def registrar_of() -> dict[str, str]:
                        entries = await ask(b, "list_entries")
                        return {
                            e["name"]: e["registrar"]
                            for e in entries
                            if (e["name"], e["uuid"]) in {("svc", svc_uuid), me.uid}
                        }

                    # both registered through A (first in their lists); B sees them
                    before = await eventually(
                        "svc and client registered through A, seen through B",
                        registrar_of,
                        lambda regs: len(regs) == 2,
                        5,
                        proc_a,
                        proc_b,
                    )
                    assert all(r.endswith(str(a)) for r in before.values()), before

                    await trio.to_thread.run_sync(sigkill, proc_a)

                    async with trio.open_nursery() as nursery:
                        # svc's lease (1.5 s) survives A: its renewals fail over to B, and
                        # B finds it at every instant of twice its lease from the kill on
                        nursery.start_soon(
                            always,
                            "svc found through B after A died",
                            lambda: ask(b, "find_actor", name="svc"),
                            equals(svc_addrs),
                            2 * ttl,
                            proc_b,
                            svc,
                        )

                        # lookups through the same [A, B] list carry on through B
                        async with tractor_reg.find_actor(
                            "svc", registry_addrs=[a, b], raise_on_none=True
                        ) as found:
                            assert isinstance(found, tractor_reg.Portal)
                            assert await found.run(whoami) == ["svc", svc_uuid]

                        # a wait for an actor started after the kill, and its registration
                        woken = trio.Event()
                        got: list[Any] = []

                        async def wait() -> None:
                            async with tractor_reg.wait_for_actor(
                                "late", registry_addr=[a, b]
                            ) as portal:
                                got.append(await portal.run(whoami))
                            woken.set()

                        nursery.start_soon(wait)
                        late_argv = joiner_argv("late", str(a), str(b), ttl=ttl, renew=renew)
                        with spawn(late_argv) as late:
                            late_uuid, late_addrs = await await_joiner(late)
                            with trio.move_on_after(8):
                                await woken.wait()
                            assert woken.is_set(), (
                                "wait_for_actor([A, B]) was not woken by a registration made "
                                f"after A died{stderr_tails((proc_b, late))}"
                            )
                            assert got == [["late", late_uuid]]

                            # renewals failed over: svc and this root now hold leases through B
                            await eventually(
                                "svc and client re-registered through B",
                                registrar_of,
                                lambda regs: (
                                    len(regs) == 2
                                    and all(r.endswith(str(b)) for r in regs.values())
                                ),
                                5,
                                proc_b,
                            )
                            entries = await ask(b, "list_entries")
                            late_entry = [e for e in entries if e["name"] == "late"]
                            assert [e["registrar"][-len(str(b)) :] for e in late_entry] == [str(b)]

                            # 6. the survivor lists exactly the live actors, each once; the
                            # dead registrar's own entry ends with its lease
                            live = {("svc", svc_uuid), ("late", late_uuid), me.uid}

                            def exactly_live(entries: list[dict[str, Any]]) -> bool:
                                regs = [e for e in entries if e["name"] == "reg"]
                                return uids_of(entries) == live and [
                                    e["registrar"][-len(str(b)) :] for e in regs
                                ] == [str(b)]

                            entries = await eventually(
                                "B listing exactly the live actors (and itself)",
                                lambda: ask(b, "list_entries"),
                                exactly_live,
                                8,
                                proc_b,
                            )
                            check_integrity(entries)
                            by_uid = {(e["name"], e["uuid"]): e["addrs"] for e in entries}
                            assert by_uid[("svc", svc_uuid)] == svc_addrs
                            assert by_uid[("late", late_uuid)] == late_addrs
                    # (the nursery waited out svc's whole observation window)
            assert proc_b.popen.poll() is None, proc_b.stderr_tail()


# -- 5. Redis outages with live registrars -----------------------------------------------


async def test_redis_outage_then_empty_restart_converges_to_the_live_actors(
    namespace: str,
) -> None:
    with redis_server() as server, registrars(url := redis_url(server, namespace)) as regs:
        (a, proc_a), (b, proc_b) = regs
        procs = (proc_a, proc_b)
        with (
            spawn(joiner_argv("j1", str(a), str(b), ttl=TTL, renew=RENEW)) as j1,
            spawn(joiner_argv("j2", str(b), str(a), ttl=TTL, renew=RENEW)) as j2,
        ):
            uuid1, addrs1 = joiner_ready(j1)
            uuid2, addrs2 = joiner_ready(j2)
            with trio.fail_after(25):
                async with tractor_reg.open_root_actor(
                    name="client", registry_addrs=[a, b], lease_ttl=TTL, renew_interval=RENEW
                ) as me:
                    live = {("j1", uuid1), ("j2", uuid2), me.uid}
                    for reg in (a, b):
                        await eventually(
                            f"{reg} listing every live actor",
                            partial(ask, reg, "get_registry"),
                            lambda table: uids_in(table) == live,
                            5,
                            *procs,
                        )

                    await trio.to_thread.run_sync(server.kill)  # SIGKILL Redis

                    # lookups are answered from the last view throughout the outage
                    # (shorter than the leases: the entries stay live meanwhile) ...
                    async def lookups() -> list[Any]:
                        return [
                            await ask(reg, "find_actor", name=name)
                            for reg in (a, b)
                            for name in ("j1", "j2")
                        ]

                    await always(
                        "lookups answered while Redis is down",
                        lookups,
                        equals([addrs1, addrs2, addrs1, addrs2]),
                        1.0,
                        *procs,
                    )
                    # ... writes fail fast, with a clear error ...
                    for reg in (a, b):
                        started = trio.current_time()
                        with pytest.raises(tractor_reg.RemoteActorError) as info:
                            await register_self(reg)
                        assert info.value.type_name == "StoreUnavailable", info.value
                        assert f"127.0.0.1:{server.port}" in info.value.remote_message
                        assert trio.current_time() - started < 3
                    # ... and the registrars' logs say how they answer
                    for proc in procs:
                        logged = proc.stderr_tail(10**6)
                        assert "answering lookups from the last coherent view" in logged

                    # Redis comes back empty (no persistence): the registrars notice that it
                    # lost the registry and reload; the live actors' renewals are answered
                    # "unknown", so they register again, and both views converge on them
                    restart_wall = time.time()
                    await trio.to_thread.run_sync(server.start)
                    restarted = trio.current_time()

                    def reregistered(entries: list[dict[str, Any]]) -> bool:
                        fresh = {
                            (e["name"], e["uuid"])
                            for e in entries
                            if e["registered_at"] >= restart_wall
                        }
                        return uids_of(entries) == live and fresh >= live

                    for reg in (a, b):
                        await eventually(
                            f"{reg} listing the live actors, registered again into the empty Redis",
                            partial(ask, reg, "list_entries"),
                            reregistered,
                            10,
                            *procs,
                        )
                    healed = trio.current_time() - restarted
                    for reg in (a, b):
                        check_integrity(await ask(reg, "list_entries"))
                    assert await ask(a, "find_actor", name="j2") == addrs2
                    assert await ask(b, "find_actor", name="j1") == addrs1

                    # what Redis itself holds (a registrar started now sees nothing else)
                    with spawn(serve_argv(url, (c := new_addr()))) as proc_c:
                        await proc_c.await_line("READY", timeout=15)
                        in_redis = await ask(c, "list_entries")
                    assert uids_of(in_redis) == live, in_redis
                    check_integrity(in_redis)

                    # writes work again, through both
                    for reg in (a, b):
                        await eventually(
                            f"a registration through {reg} stored",
                            partial(refused, reg),
                            lambda error: error is None,
                            5,
                            *procs,
                        )
            for proc in (*procs, j1, j2):
                assert proc.popen.poll() is None, proc.stderr_tail()
    print(f"[both registrars converged {healed:.2f}s after Redis restarted empty]")


async def test_redis_restart_with_persistence_loses_nothing(namespace: str) -> None:
    with (
        redis_server(PERSISTENT) as server,
        registrars(url := redis_url(server, namespace)) as regs,
    ):
        (a, proc_a), (b, proc_b) = regs
        procs = (proc_a, proc_b)
        # long leases, no renewal during the test: whatever is listed after the restart
        # comes from what Redis kept, not from a re-registration
        with (
            spawn(joiner_argv("j1", str(a), ttl=60, renew=50)) as j1,
            spawn(joiner_argv("j2", str(b), ttl=60, renew=50)) as j2,
        ):
            uuid1, _ = joiner_ready(j1)
            uuid2, _ = joiner_ready(j2)
            with trio.fail_after(20):
                async with tractor_reg.open_root_actor(
                    name="client", registry_addrs=[a, b], lease_ttl=60, renew_interval=50
                ) as me:
                    live = {("j1", uuid1), ("j2", uuid2), me.uid}
                    for reg in (a, b):
                        await eventually(
                            f"{reg} listing every live actor",
                            partial(ask, reg, "get_registry"),
                            lambda table: uids_in(table) == live,
                            5,
                            *procs,
                        )
                    before = {(e["name"], e["uuid"]): e for e in await ask(a, "list_entries")}

                    await trio.to_thread.run_sync(server.kill)  # SIGKILL Redis ...
                    await trio.to_thread.run_sync(server.start)  # ... same port, same AOF

                    # the registrars' views, and a registrar started after the restart (its
                    # view is what Redis has), list the very same entries: same revision,
                    # same lease
                    with spawn(serve_argv(url, (c := new_addr()))) as proc_c:
                        await proc_c.await_line("READY", timeout=15)
                        for reg in (a, b, c):
                            after = await ask(reg, "list_entries")
                            check_integrity(after)
                            theirs = {(e["name"], e["uuid"]): e for e in after}
                            for uid in live:
                                assert theirs.get(uid) == before[uid], (reg, uid, theirs.get(uid))

                        # and the store goes on: a registration through B after the restart
                        # is found through A and through the newcomer, all views agreeing
                        with spawn(joiner_argv("j3", str(b), ttl=10, renew=RENEW)) as j3:
                            _, addrs3 = await await_joiner(j3)
                            for reg in (a, b, c):
                                await eventually(
                                    f"j3 (registered through B after the restart) at {reg}",
                                    partial(ask, reg, "find_actor", name="j3"),
                                    equals(addrs3),
                                    8,
                                    *procs,
                                    proc_c,
                                    j3,
                                )
                            await eventually(
                                "the three registrars' views agreeing",
                                lambda: _views(a, b, c),
                                lambda views: views[0] == views[1] == views[2],
                                5,
                                *procs,
                                proc_c,
                            )


async def _views(*regs: Addr) -> list[set[tuple[Any, ...]]]:
    return [view_of(await ask(reg, "list_entries")) for reg in regs]


async def test_registrars_survive_an_outage_longer_than_the_leases(namespace: str) -> None:
    """While Redis is down the leases run out; purging them cannot be stored, and must
    not take a registrar down: once Redis is back the live actor registers again."""
    with redis_server() as server, registrars(redis_url(server, namespace)) as regs:
        (a, proc_a), (b, proc_b) = regs
        procs = (proc_a, proc_b)
        with spawn(joiner_argv("j1", str(a), str(b), ttl=1.0, renew=0.25)) as j1:
            _, addrs1 = joiner_ready(j1)
            with trio.fail_after(20):
                async with tractor_reg.open_root_actor(name="probe", registry_addrs=[a, b]):
                    for reg in (a, b):
                        await eventually(
                            f"j1 listed by {reg}",
                            partial(ask, reg, "find_actor", name="j1"),
                            equals(addrs1),
                            5,
                            *procs,
                        )
                    await trio.to_thread.run_sync(server.kill)
                    # the lease (1 s) ends during the outage: j1 leaves lookups ...
                    for reg in (a, b):
                        await eventually(
                            f"j1's lease ending at {reg} while Redis is down",
                            partial(ask, reg, "find_actor", name="j1"),
                            lambda found: found is None,
                            5,
                            *procs,
                        )
                    # ... and both registrars keep serving while their purges fail (1 s
                    # purge interval: at least two attempts each)
                    await always(
                        "both registrars serving while Redis is down",
                        lambda: _answers(a, b),
                        lambda codes: codes == [None, None],
                        2.5,
                        *procs,
                    )
                    await trio.to_thread.run_sync(server.start)
                    for reg in (a, b):
                        await eventually(
                            f"j1 registered again at {reg} once Redis is back",
                            partial(ask, reg, "find_actor", name="j1"),
                            equals(addrs1),
                            10,
                            *procs,
                            j1,
                        )
            for proc in (*procs, j1):
                assert proc.popen.poll() is None, proc.stderr_tail()


async def _answers(*regs: Addr) -> list[Any]:
    return [await ask(reg, "find_actor", name="j1") for reg in regs]


# -- right after Redis comes back ---------------------------------------------------------

#: A Redis outage long enough for the registrars' reconnect back-off (0.1 s doubling) to
#: have grown to 3.2 s: their next try comes ~6.3 s after the kill, ~3 s after the restart.
OUTAGE = 3.3


async def _outage(server: RedisServer, *regs: Addr, procs: tuple[Proc, ...]) -> None:
    """SIGKILL Redis; for OUTAGE seconds the registrars keep answering lookups of this root
    from their views; then Redis restarts on the same port (with what it persisted)."""
    me = tractor_reg.current_actor()
    mine = [list(a) for a in me.accept_addrs]
    await trio.to_thread.run_sync(server.kill)
    await always(
        "this root found from the registrars' views while Redis is down",
        lambda: _finds(me.name, *regs),
        equals([mine] * len(regs)),
        OUTAGE,
        *procs,
    )
    await trio.to_thread.run_sync(server.start)


async def _finds(name: str, *regs: Addr) -> list[Any]:
    return [await ask(reg, "find_actor", name=name) for reg in regs]


async def test_first_write_after_redis_restarts_is_stored(namespace: str) -> None:
    """The registrars' pooled connections from before the outage are dead; the first write
    after the restart must not be the one that finds out (with RESP3, redis-py skips its
    check of idle connections and this write failed with "Connection closed by server")."""
    with redis_server(PERSISTENT) as server, registrars(redis_url(server, namespace)) as regs:
        (a, proc_a), (b, proc_b) = regs
        procs = (proc_a, proc_b)
        with trio.fail_after(20):
            async with tractor_reg.open_root_actor(
                name="client", registry_addrs=[a, b], lease_ttl=60, renew_interval=50
            ):
                await eventually(
                    "this root seen through B",
                    lambda: ask(b, "find_actor", name="client"),
                    lambda found: found is not None,
                    5,
                    *procs,
                )
                await _outage(server, a, b, procs=procs)
                # Redis is back, with its data: a write through either registrar is stored
                # (a caller cannot tell a stale pooled connection from an outage)
                assert [await refused(reg) for reg in (a, b)] == [None, None], stderr_tails(procs)


async def test_registrar_follows_the_other_soon_after_redis_returns(namespace: str) -> None:
    with redis_server(PERSISTENT) as server, registrars(redis_url(server, namespace)) as regs:
        (a, proc_a), (b, proc_b) = regs
        procs = (proc_a, proc_b)
        with trio.fail_after(20):
            async with tractor_reg.open_root_actor(
                name="client", registry_addrs=[a, b], lease_ttl=60, renew_interval=50
            ):
                await eventually(
                    "this root seen through B",
                    lambda: ask(b, "find_actor", name="client"),
                    lambda found: found is not None,
                    5,
                    *procs,
                )
                await _outage(server, a, b, procs=procs)
                # an actor registers through A as soon as Redis takes writes again ...
                fresh = ["fresh", f"fresh-{namespace}"]
                fresh_addr = [[f"/tmp/tr-{namespace}", "fresh.sock"]]

                async def register_fresh() -> bool:
                    async with client(a, fresh[0], fresh[1]) as peer:
                        reply = await peer.call(
                            "self", "register_actor", uid=fresh, addr=fresh_addr, ttl=60
                        )
                    return isinstance(reply, Return)

                await eventually("a registration through A stored", register_fresh, bool, 5, *procs)
                # ... and B, polling Redis every 0.2 s when all is well, finds it soon
                await eventually(
                    "B finding a registration made through A after Redis came back",
                    lambda: ask(b, "find_actor", name="fresh"),
                    equals(fresh_addr),
                    1.5,
                    *procs,
                )


# -- SIGKILL of a registrar in a registration storm ------------------------------------------


async def test_sigkill_in_a_storm_loses_no_acknowledged_registration_redis(
    namespace: str,
) -> None:
    """A registrar is acknowledged only once Redis has the write: killing it mid-storm
    loses nothing that was acknowledged, and a new registrar serves every one of them."""
    from tests.test_sqlite_registrar import (
        STORM_COUNT,
        STORM_KILL_AFTER,
        StdoutLines,
        reader,
        storm_argv,
        wait_ready,
    )

    server = start_standalone()
    try:
        backend = f"{server.url}?namespace={namespace}&connect_timeout=0.5&socket_timeout=2"
        addr = tractor_reg.TCPAddress("127.0.0.1", free_port())
        with spawn(registrar_argv(str(addr), extra=["--backend", backend])) as victim:
            wait_ready(victim)
            with spawn(storm_argv(addr)) as storm:
                out = StdoutLines(storm)
                out.until(
                    lambda: len(out.acked()) >= STORM_KILL_AFTER,
                    15,
                    f"{STORM_KILL_AFTER} acknowledged registrations",
                )
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
                if not out.to_eof(10):
                    storm.kill_group()
                    assert out.to_eof(10), "the storm's stdout did not close after a SIGKILL"
                acked = out.acked()
        with spawn(registrar_argv(str(addr), extra=["--backend", backend])) as reborn:
            wait_ready(reborn)
            with trio.fail_after(15):
                async with reader(addr, "after") as peer:
                    entries = await peer.reg("list_entries")
        stored = {e["uuid"]: e["addrs"] for e in entries if e["name"] == "storm"}
        lost = acked - stored.keys()
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged registrations lost"
        for uuid in acked:
            assert stored[uuid] == [["127.0.0.1", 20000 + int(uuid)]], (uuid, stored[uuid])
        assert all(0 <= int(uuid) < STORM_COUNT for uuid in stored)
    finally:
        server.stop()
