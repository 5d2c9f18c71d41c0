"""The change feed: watch(), the registrar's snapshot/watch_changes/stats/remove endpoints."""

from __future__ import annotations

import os
import signal

import pytest
import trio

import tractor_reg
from tests.procs import joiner_argv, registrar_argv, spawn, wait_gone
from tests.rpc_targets import funcs

FUNCS = "tests.rpc_targets.funcs"


async def test_watch_streams_changes_of_other_programs(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(20):
            async with tractor_reg.open_registry_client([reg_addr]) as client:
                assert not client.is_registrar
                async with tractor_reg.get_registry() as portal:
                    snap = await portal.run_from_ns("self", "snapshot")
                    # the client itself is not in the registry it inspects
                    assert all(e["name"] != client.name for e in snap["entries"])
                seen: list[tractor_reg.Change] = []
                async with trio.open_nursery() as nursery:

                    async def follow() -> None:
                        async for change in tractor_reg.watch("svc", since=snap["revision"]):
                            seen.append(change)
                            if change.kind == "unregistered":
                                return

                    nursery.start_soon(follow)
                    with spawn(joiner_argv("svc", str(reg_addr))) as svc:
                        line = svc.wait_line("READY")
                        svc.signal(signal.SIGINT)  # clean exit: it unregisters
                        svc.wait(10)
                kinds = [c.kind for c in seen]
                assert kinds == ["registered", "unregistered"], seen
                assert seen[0].uuid == line.split()[1]
                assert seen[0].revision < seen[1].revision
                assert str(tractor_reg.wrap_address(seen[0].addrs[0])) == line.split()[2]


async def test_watch_resumes_from_a_revision_and_filters(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            async with tractor_reg.get_registry() as portal:
                start = (await portal.run_from_ns("self", "snapshot"))["revision"]
            one = await an.start_actor("one", enable_modules=[FUNCS])
            await an.start_actor("two", enable_modules=[FUNCS])
            await one.cancel_actor()
            # everything since `start`, only for "one": registered then unregistered
            got: list[tractor_reg.Change] = []
            async for change in tractor_reg.watch("one", since=start):
                got.append(change)
                if len(got) == 2:
                    break
            assert [c.kind for c in got] == ["registered", "unregistered"]
            assert all(c.name == "one" for c in got)
            # resuming after the first change yields the second, not the first again
            async for change in tractor_reg.watch("one", since=got[0].revision):
                assert change == got[1]
                break


async def test_watch_from_a_forgotten_revision_raises(reg_addr: tractor_reg.TCPAddress) -> None:
    backend = tractor_reg.backends.MemoryBackend()
    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], registry_backend=backend):
            backend.reset()  # history now starts at the current revision
            with pytest.raises(tractor_reg.ChangesExpired):
                async for _ in tractor_reg.watch(since=0):
                    pass


async def test_watch_changes_bad_arguments(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            async with tractor_reg.get_registry() as portal:
                for kwargs in ({"since": "x"}, {"name": 3}, {"timeout": 0}, {"timeout": "1"}):
                    with pytest.raises(tractor_reg.InvalidRequest):
                        await portal.run_from_ns("self", "watch_changes", **kwargs)
                # an empty wait ends at the timeout with no changes
                answer = await portal.run_from_ns("self", "watch_changes", timeout=0.05)
                assert answer["changes"] == []


async def test_stats(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            await an.start_actor("svc", enable_modules=[FUNCS])
            async with tractor_reg.get_registry() as portal:
                for _ in range(3):
                    await portal.run_from_ns("self", "find_actor", name="svc")
                stats = await portal.run_from_ns("self", "stats")
    assert stats["backend"] == "memory"
    assert stats["backend_healthy"] is True
    assert stats["entries"] == 2  # the registrar and svc
    assert stats["lookups"] >= 3
    assert stats["registrations"] >= 2
    assert stats["waiters"] == 0
    assert stats["uptime"] >= 0


async def test_admin_remove_is_verified_unless_forced(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(30):
            async with tractor_reg.open_registry_client([reg_addr]):
                async with tractor_reg.get_registry() as portal:
                    with pytest.raises(tractor_reg.RemoteActorError) as info:
                        await portal.run_from_ns("self", "remove", target="ghost")
                    assert info.value.type_name == "ActorNotFound"
                    with spawn(joiner_argv("live", str(reg_addr))) as live:
                        uuid = live.wait_line("READY").split()[1]
                        kept = await portal.run_from_ns("self", "remove", target="live")
                        assert [r["removed"] for r in kept] == [False]
                        assert await portal.run_from_ns("self", "find_actor", name="live")
                        # over TCP without a secret a forced removal is refused
                        # (tests/test_identity.py: allowed over the Unix socket)
                        with pytest.raises(tractor_reg.RemoteActorError) as info:
                            await portal.run_from_ns("self", "remove", target=uuid, force=True)
                        assert info.value.type_name == "PermissionDenied"
                        assert await portal.run_from_ns("self", "find_actor", name="live")
                    with spawn(joiner_argv("dead", str(reg_addr))) as dead:
                        dead.wait_line("READY")
                        os.kill(dead.pid, signal.SIGKILL)
                        wait_gone(dead.pid)
                        gone = await portal.run_from_ns("self", "remove", target="dead")
                        assert [r["removed"] for r in gone] == [True]
                    with pytest.raises(tractor_reg.RemoteActorError) as info:
                        await portal.run_from_ns("self", "remove", target="")
                    assert info.value.type_name == "InvalidRequest"


async def test_registry_client_needs_a_registrar(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10), pytest.raises(tractor_reg.RegistryUnavailable):
        async with tractor_reg.open_registry_client([reg_addr]):
            pass


async def test_wait_for_actor_from_a_registry_client(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(20):
            async with tractor_reg.open_registry_client([reg_addr]):
                with pytest.raises(TimeoutError):
                    async with tractor_reg.wait_for_actor("svc", timeout=0.2):
                        pass
                with spawn(joiner_argv("svc", str(reg_addr))) as svc:
                    svc.wait_line("READY")
                    async with tractor_reg.wait_for_actor("svc", timeout=10) as portal:
                        assert await portal.run(funcs.add, a=1, b=2) == 3
