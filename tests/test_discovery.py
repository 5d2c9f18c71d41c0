"""Discovery through the registrar: find_actor, wait_for_actor, query_actor, get_registry."""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing

import tractor_reg
from tests.procs import joiner_argv, registrar_argv, spawn, wait_gone
from tests.rpc_targets import funcs

FUNCS = "tests.rpc_targets.funcs"


async def test_find_actor_none_and_raise_on_none(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            async with tractor_reg.find_actor("ghost") as portal:
                assert portal is None
            async with tractor_reg.find_actor("ghost", only_first=False) as portals:
                assert portals == []
            with pytest.raises(tractor_reg.ActorNotFound, match="ghost"):
                async with tractor_reg.find_actor("ghost", raise_on_none=True):
                    pass


async def test_sibling_finds_sibling_through_registrar(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            await an.start_actor("target", enable_modules=[FUNCS])
            seeker = await an.start_actor("seeker", enable_modules=[FUNCS])
            # the seeker is not connected to the target: lookup + connect + handshake
            assert await seeker.run(funcs.find_and_call, name="target", value=7) == 7
            assert await seeker.run(funcs.find_and_call, name="nobody", value=7) is None


async def test_latest_registration_wins_and_only_first_false(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            first = await an.start_actor("dup", enable_modules=[FUNCS])
            second = await an.start_actor("dup", enable_modules=[FUNCS])
            seeker = await an.start_actor("seeker", enable_modules=[FUNCS])
            # from a process connected to neither, the most recent registration answers
            async with tractor_reg.get_registry() as reg:
                addrs = await reg.run_from_ns("self", "find_actor", name="dup")
            assert [tuple(a) for a in addrs] == [
                tuple(a) for a in await second.run(funcs.accept_addrs)
            ]
            assert await seeker.run(funcs.find_and_call, name="dup", value="x") == "x"
            async with tractor_reg.find_actor("dup", only_first=False) as portals:
                uids = {p.channel.aid.uid for p in portals}
            assert uids == {first.channel.aid.uid, second.channel.aid.uid}
            entries = await reg.run_from_ns("self", "find_actors", name="dup")
            assert [tuple(e["uid"]) for e in entries] == [
                second.channel.aid.uid,
                first.channel.aid.uid,
            ]


async def test_uuid_is_not_matched_as_name(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            uuid = portal.channel.aid.uuid
            async with tractor_reg.get_registry() as reg:
                assert await reg.run_from_ns("self", "find_actor", name=uuid) is None


async def test_wait_for_actor_wakes_on_registration(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            got: list[object] = []
            waiting = trio.Event()

            async def waiter() -> None:
                waiting.set()
                async with tractor_reg.wait_for_actor("late") as portal:
                    got.append(await portal.run(funcs.whoami))

            async with trio.open_nursery() as tasks:
                tasks.start_soon(waiter)
                await waiting.wait()
                await trio.testing.wait_all_tasks_blocked()
                assert got == []
                late = await an.start_actor("late", enable_modules=[FUNCS])
            assert got == [list(late.channel.aid.uid)]


async def test_wait_for_actor_timeout(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            with pytest.raises(TimeoutError):
                async with tractor_reg.wait_for_actor("never", timeout=0.2):
                    pass
            # the registrar's waiter for the abandoned call is gone and it still serves
            async with tractor_reg.get_registry() as reg:
                assert await reg.run_from_ns("self", "find_actor", name="never") is None


async def test_wait_for_actor_across_processes(reg_addr: tractor_reg.TCPAddress) -> None:
    """A waiter in one program is woken by a registration made by another program."""
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(20):
            async with tractor_reg.open_root_actor(name="waiter", registry_addrs=[reg_addr]):
                async with trio.open_nursery() as tasks:
                    found: list[object] = []

                    async def wait() -> None:
                        async with tractor_reg.wait_for_actor("svc") as portal:
                            found.append(await portal.run(funcs.add, a=1, b=1))

                    tasks.start_soon(wait)
                    with spawn(joiner_argv("svc", str(reg_addr))) as svc:
                        svc.wait_line("READY")
                        while not found:
                            await trio.sleep(0.01)
                assert found == [2]


async def test_query_actor(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            async with tractor_reg.query_actor("svc") as (addr, reg_portal):
                assert addr is None
                assert isinstance(reg_portal, tractor_reg.LocalPortal)
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            # connected peer: answered locally, without the registrar
            async with tractor_reg.query_actor("svc") as (addr, reg_portal):
                assert reg_portal is None
                assert addr in portal.channel.aid.accept_addrs
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with spawn(joiner_argv("svc", str(reg_addr))) as svc:
            line = svc.wait_line("READY")
            with trio.fail_after(10):
                async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
                    async with tractor_reg.query_actor("svc", regaddr=reg_addr) as (addr, rp):
                        assert isinstance(rp, tractor_reg.Portal)
                        assert str(addr) == line.split()[2]


async def test_get_registry_reuses_connection(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(10):
            async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
                async with tractor_reg.get_registry() as one:
                    pass
                async with tractor_reg.get_registry(str(reg_addr)) as two:
                    assert isinstance(one, tractor_reg.Portal)
                    assert isinstance(two, tractor_reg.Portal)
                    assert one.channel is two.channel
                    assert not two.channel.closed


async def test_dead_actor_is_reported_verified_and_dropped(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(20):
            async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
                with spawn(joiner_argv("victim", str(reg_addr))) as victim:
                    victim.wait_line("READY")
                    os.kill(victim.pid, signal.SIGKILL)
                    wait_gone(victim.pid)
                    # its 30 s lease has not expired: the entry is still there...
                    async with tractor_reg.get_registry() as portal:
                        assert await portal.run_from_ns("self", "find_actor", name="victim")
                    # ...until a client fails to connect, reports it, and the registrar
                    # verifies it is really gone
                    async with tractor_reg.find_actor("victim") as found:
                        assert found is None
                    assert await portal.run_from_ns("self", "find_actor", name="victim") is None


async def test_live_actor_cannot_be_evicted_by_a_client(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            addr = list(portal.channel.aid.accept_addrs[0])
            async with tractor_reg.get_registry() as reg:
                assert await reg.run_from_ns("self", "delete_addr", addr=addr) is False
                assert await reg.run_from_ns("self", "find_actor", name="svc") == [addr]


async def test_multihomed_lookup_prefers_uds(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(
            registry_addrs=[reg_addr], enable_transports=["tcp", "uds"]
        ) as an:
            await an.start_actor("svc", enable_modules=[FUNCS])
            seeker = await an.start_actor("seeker", enable_modules=[FUNCS])
            assert await seeker.run(funcs.find_and_call, name="svc", value=1) == 1
            async with tractor_reg.get_registry() as reg:
                addrs = await reg.run_from_ns("self", "find_actor", name="svc")
            both: set[type[tractor_reg.Address]] = {
                tractor_reg.TCPAddress,
                tractor_reg.UDSAddress,
            }
            assert {type(tractor_reg.wrap_address(a)) for a in addrs} == both
            async with tractor_reg.query_actor("svc", regaddr=reg_addr) as (best, _):
                pass
    assert isinstance(best, tractor_reg.UDSAddress)


async def test_find_actor_fails_over_between_registrars() -> None:
    from tests.conftest import free_port

    a = tractor_reg.TCPAddress("127.0.0.1", free_port())
    b = tractor_reg.TCPAddress("127.0.0.1", free_port())
    with spawn(registrar_argv(str(a))) as reg_a, spawn(registrar_argv(str(b))) as reg_b:
        reg_a.wait_line("READY")
        reg_b.wait_line("READY")
        # the service registers at the first registrar that answers: b (a is listed but dead)
        reg_a.kill_group()
        with spawn(joiner_argv("svc", str(a), str(b))) as svc:
            svc.wait_line("READY")
            with trio.fail_after(15):
                async with tractor_reg.open_root_actor(registry_addrs=[a, b], name="client") as me:
                    assert not me.is_registrar
                    async with tractor_reg.find_actor("svc", registry_addrs=[a, b]) as portal:
                        assert portal is not None
                        assert await portal.run(funcs.add, a=2, b=2) == 4
                    async with tractor_reg.wait_for_actor("svc") as portal:
                        assert await portal.run(funcs.add, a=3, b=3) == 6
            with trio.fail_after(10), pytest.raises(tractor_reg.RegistryUnavailable):
                async with tractor_reg.open_root_actor(registry_addrs=[b], name="c2"):
                    reg_b.kill_group()
                    async with tractor_reg.find_actor("svc", registry_addrs=[a]):
                        pass


async def test_an_address_answering_as_another_actor_is_not_returned(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """A dead actor's port reused by another process: lookups must not hand it out."""
    from tests.rpc_targets.hostile import client, fake_actor

    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            async with fake_actor("other", "o-1") as addr:
                # "ghost" registered the address, then died; "other" now owns the port
                async with client(reg_addr, "ghost", "g-1") as g:
                    assert await g.reg("register_actor", uid=["ghost", "g-1"], addr=[list(addr)])
                await trio.testing.wait_all_tasks_blocked()  # the registrar saw it hang up
                async with tractor_reg.find_actor("ghost") as portal:
                    assert portal is None
                # it was reported, verified (the port answers as someone else) and dropped
                async with tractor_reg.get_registry() as reg:
                    assert await reg.run_from_ns("self", "find_actor", name="ghost") is None
