"""Leases: renewal, expiry, and healing after the registrar forgets everyone."""

from __future__ import annotations

import os
import signal

import trio

import tractor_reg
from tests.procs import joiner_argv, registrar_argv, spawn


async def _names(portal: tractor_reg.Portal | tractor_reg.LocalPortal) -> set[str]:
    table = await portal.run_from_ns("self", "get_registry")
    return {key.split(".", 1)[0] for key in table}


async def _wait_until(portal: tractor_reg.Portal | tractor_reg.LocalPortal, present: bool) -> None:
    while ("svc" in await _names(portal)) != present:
        await trio.sleep(0.02)


async def test_frozen_actor_expires_and_comes_back(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], purge_interval=0.1):
            async with tractor_reg.get_registry() as portal:
                with spawn(joiner_argv("svc", str(reg_addr), ttl=0.6, renew=0.15)) as svc:
                    await svc.await_line("READY")
                    assert "svc" in await _names(portal)
                    # alive but silent: nobody reports it, so only its lease can end it
                    os.kill(svc.pid, signal.SIGSTOP)
                    await _wait_until(portal, present=False)
                    assert await portal.run_from_ns("self", "find_actor", name="svc") is None
                    # thawed, its next renewal is refused as unknown and it re-registers
                    os.kill(svc.pid, signal.SIGCONT)
                    await _wait_until(portal, present=True)


async def test_live_actor_keeps_its_lease(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], purge_interval=0.05):
            async with tractor_reg.get_registry() as portal:
                with spawn(joiner_argv("svc", str(reg_addr), ttl=0.4, renew=0.1)) as svc:
                    await svc.await_line("READY")
                    first = await portal.run_from_ns("self", "list_entries")
                    svc_entry = next(e for e in first if e["name"] == "svc")
                    # wait for several lease periods to pass, by the registrar's own record
                    while True:
                        entries = await portal.run_from_ns("self", "list_entries")
                        now = next(e for e in entries if e["name"] == "svc")
                        if now["expires_at"] > svc_entry["expires_at"] + 1.2:
                            break
                        await trio.sleep(0.05)
                    # renewals never re-registered it: same revision the whole time
                    assert now["revision"] == svc_entry["revision"]
                    assert now["uuid"] == svc_entry["uuid"]


async def test_in_memory_registrar_restart_heals(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with spawn(joiner_argv("svc", str(reg_addr), ttl=1.5, renew=0.2)) as svc:
            svc.wait_line("READY")
            reg.kill_group()
            # a fresh, empty in-memory registrar at the same address
            with spawn(registrar_argv(str(reg_addr))) as reborn:
                reborn.wait_line("READY")
                with trio.fail_after(15):
                    async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], name="probe"):
                        async with tractor_reg.get_registry() as portal:
                            await _wait_until(portal, present=True)
                        async with tractor_reg.find_actor("svc") as found:
                            assert found is not None


async def test_unregister_on_clean_exit(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            async with tractor_reg.get_registry() as portal:
                with spawn(joiner_argv("svc", str(reg_addr))) as svc:
                    await svc.await_line("READY")
                    assert "svc" in await _names(portal)
                    svc.signal(signal.SIGINT)
                    await svc.await_exit(10)
                # gone at once, long before its 30 s lease would end
                assert "svc" not in await _names(portal)


class _SlowAckBackend(tractor_reg.backends.MemoryBackend):
    """Deletes at once but acknowledges an unregister late: the window in which a dying
    actor's lease loop used to register it again."""

    async def unregister(
        self, uid: tuple[str, str], *, owner: bytes | None = None
    ) -> tractor_reg.backends.Entry | None:
        removed = await super().unregister(uid, owner=owner)
        await trio.sleep(0.2)
        return removed


async def test_a_stopping_actor_never_registers_itself_again(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    from tests.rpc_targets import funcs

    backend = _SlowAckBackend()
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(
            registry_addrs=[reg_addr], registry_backend=backend, lease_ttl=5, renew_interval=0.01
        ) as an:
            portal = await an.start_actor("svc", enable_modules=["tests.rpc_targets.funcs"])
            pid = await portal.run(funcs.pid)
            assert await portal.cancel_actor()
            await an.cancel()  # wait until the process is gone
            assert await backend.lookup("svc") is None, "svc registered itself again"
    assert pid
