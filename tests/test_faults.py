"""Faults that hit a live deployment: a registrar that stops answering without closing
its sockets (SIGSTOP), and the clients' failover around it."""

from __future__ import annotations

import os
import signal
import time

import pytest
import trio

import tractor_reg
from tests.conftest import free_port
from tests.procs import joiner_argv, registrar_argv, spawn
from tests.rpc_targets import funcs

pytestmark = pytest.mark.sqlite


def _tcp() -> tractor_reg.TCPAddress:
    return tractor_reg.TCPAddress("127.0.0.1", free_port())


async def test_stopped_registrar_times_out_and_clients_fail_over(tmp_path: object) -> None:
    db = f"sqlite:///{tmp_path}/reg.db?poll_interval=0.05"
    a, b = _tcp(), _tcp()
    with spawn(registrar_argv(str(a), extra=["--backend", db])) as reg_a:
        reg_a.wait_line("READY")
        with spawn(registrar_argv(str(b), extra=["--backend", db])) as reg_b:
            reg_b.wait_line("READY")
            with spawn(joiner_argv("svc", str(a), str(b), ttl=3.0, renew=0.3)) as svc:
                svc.wait_line("READY")
                with trio.fail_after(30):
                    async with tractor_reg.open_root_actor(
                        name="client",
                        registry_addrs=[a, b],
                        call_timeout=0.5,
                        handshake_timeout=0.5,
                    ):
                        async with tractor_reg.find_actor("svc", registry_addrs=[a, b]) as p:
                            assert p is not None
                        # A stops answering but keeps its sockets open (half-dead)
                        os.kill(reg_a.pid, signal.SIGSTOP)
                        try:
                            started = time.monotonic()
                            async with tractor_reg.find_actor(
                                "svc", registry_addrs=[a, b]
                            ) as portal:
                                assert portal is not None
                                assert await portal.run(funcs.add, a=1, b=1) == 2
                            # bounded by the call/handshake deadlines, not hanging
                            assert time.monotonic() - started < 10
                            async with tractor_reg.wait_for_actor("svc") as portal:
                                assert await portal.run(funcs.add, a=2, b=2) == 4
                            # the service's lease moved to B: still found after its TTL
                            deadline = time.monotonic() + 4.0
                            while time.monotonic() < deadline:
                                async with tractor_reg.get_registry(b) as reg:
                                    assert await reg.run_from_ns(
                                        "self", "find_actor", name="svc"
                                    ), "svc vanished while A was stopped"
                                await trio.sleep(0.2)
                        finally:
                            os.kill(reg_a.pid, signal.SIGCONT)


async def test_registry_call_to_a_stopped_registrar_raises_registry_timeout(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(20):
            async with tractor_reg.open_registry_client([reg_addr], call_timeout=0.3) as me:
                assert await me.registry_call(reg_addr, "find_actor", name="x") is None
                os.kill(reg.pid, signal.SIGSTOP)
                try:
                    with pytest.raises(tractor_reg.RegistryTimeout):
                        await me.registry_call(reg_addr, "find_actor", name="x")
                    with pytest.raises(tractor_reg.RegistryUnavailable):
                        async with tractor_reg.find_actor("x"):
                            pass
                finally:
                    os.kill(reg.pid, signal.SIGCONT)
                # once it answers again, the next call dials afresh and works
                assert await me.registry_call(reg_addr, "find_actor", name="x") is None
