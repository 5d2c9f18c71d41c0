"""Registrar processes sharing one real redis-server through Redis outages.

Every test starts its own ``redis-server`` on a free port (:mod:`tests.redis_servers`), two
``python -m tractor_reg serve`` processes on different ports over it (with a namespace of
the test's own), real joiner actors (:mod:`tests.rpc_targets.joiner`) and an in-test root
actor that looks things up through the registrars' endpoints. Crashes are SIGKILL, of a
registrar or of Redis itself. The scenarios that hold for any shared store (SQLite or
Redis: finding, waiting, "latest registered", failover, a crash in a storm) are in
:mod:`tests.test_shared_store`.

Outages are bounded observation windows (:func:`tests.procs.always`: lookups must keep
answering throughout); everything else is awaited by what the processes say, with a
deadline.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from functools import partial
from typing import Any

import pytest
import trio

import tractor_reg
from tests.procs import (
    Proc,
    always,
    ask,
    await_joiner,
    check_integrity,
    equals,
    eventually,
    joiner_argv,
    joiner_ready,
    new_addr,
    registrars,
    serve_argv,
    spawn,
    stderr_tails,
    uids_in,
    uids_of,
    view_of,
)
from tests.redis_servers import REDIS_SERVER, RedisServer, redis_server, redis_url
from tests.rpc_targets.hostile import client
from tractor_reg._msg import Return

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

#: Leases of the actors in the outage tests: short, so that healing is quick to observe.
TTL, RENEW = 2.0, 0.3
#: Redis with every write on disk before it is acknowledged.
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")

Addr = tractor_reg.TCPAddress


@pytest.fixture
def namespace() -> str:
    return f"t-{uuidlib.uuid4().hex[:12]}"


# -- asking the registrars ----------------------------------------------------------------


async def register_self(reg: Addr, ttl: float = 5.0) -> dict[str, Any]:
    """The in-test root registers its own uid again, through ``reg``."""
    me = tractor_reg.current_actor()
    answer: dict[str, Any] = await ask(
        reg,
        "register_actor",
        uid=list(me.uid),
        addr=[list(a) for a in me.accept_addrs],
        ttl=ttl,
        token=me._lease_token,
    )
    return answer


async def refused(reg: Addr) -> str | None:
    """``None`` if a registration through ``reg`` is stored, else the error's type name."""
    try:
        await register_self(reg)
    except tractor_reg.RemoteActorError as exc:
        return exc.type_name
    return None


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
