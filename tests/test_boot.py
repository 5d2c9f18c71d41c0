"""Root boot rules: probe the registry addresses, then join, become the registrar, or refuse."""

from __future__ import annotations

import os
import socket
import warnings
from typing import Any

import pytest
import trio

import tractor_reg
from tests.conftest import free_port
from tests.procs import joiner_argv, registrar_argv, spawn


async def _registry(
    portal: tractor_reg.Portal | tractor_reg.LocalPortal,
) -> dict[str, list[list[Any]]]:
    table = await portal.run_from_ns("self", "get_registry")
    assert isinstance(table, dict)
    return table


async def test_all_absent_becomes_registrar(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]) as actor:
            assert isinstance(actor, tractor_reg.Registrar)
            assert actor.is_registrar
            assert actor.accept_addrs == [reg_addr]
            assert tractor_reg.current_actor() is actor
            async with tractor_reg.get_registry() as portal:
                assert isinstance(portal, tractor_reg.LocalPortal)
                table = await _registry(portal)
            assert f"{actor.name}.{actor.uuid}" in table
    with pytest.raises(tractor_reg.NoRuntime):
        tractor_reg.current_actor()


async def test_registrar_answers_so_root_joins(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(10):
            async with tractor_reg.open_root_actor(name="app", registry_addrs=[reg_addr]) as actor:
                assert not actor.is_registrar
                assert not isinstance(actor, tractor_reg.Registrar)
                assert actor.accept_addrs and actor.accept_addrs != [reg_addr]
                assert all(isinstance(a, tractor_reg.TCPAddress) for a in actor.accept_addrs)
                async with tractor_reg.get_registry() as portal:
                    assert isinstance(portal, tractor_reg.Portal)
                    assert portal.channel.aid.is_registrar
                    table = await _registry(portal)
                assert table[f"app.{actor.uuid}"] == [list(a) for a in actor.accept_addrs]
            # the root unregistered itself on the way out
            async with tractor_reg.open_root_actor(name="check", registry_addrs=[reg_addr]):
                async with tractor_reg.get_registry() as portal:
                    assert f"app.{actor.uuid}" not in await _registry(portal)


async def _silent_server(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def test_occupied_by_non_registrar_is_refused() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_silent_server)
            addr = ("127.0.0.1", port)
            with pytest.raises(RuntimeError, match="not a tractor_reg registrar"):
                async with tractor_reg.open_root_actor(
                    registry_addrs=[addr], handshake_timeout=0.5
                ):
                    pass
            # nothing was rebound: the squatter still owns its port
            stream = await trio.open_tcp_stream(*addr)
            assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 400")
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_occupied_by_plain_actor_is_refused(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with spawn(joiner_argv("plain", str(reg_addr))) as plain:
            line = plain.wait_line("READY")
            plain_addr = tractor_reg.parse_address(line.split()[2])
            with (
                trio.fail_after(10),
                pytest.raises(RuntimeError, match="not a tractor_reg registrar"),
            ):
                async with tractor_reg.open_root_actor(registry_addrs=[plain_addr]):
                    pass


async def test_ensure_registry_while_registrar_answers(reg_addr: tractor_reg.TCPAddress) -> None:
    with spawn(registrar_argv(str(reg_addr))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(10), pytest.raises(RuntimeError, match="ensure_registry"):
            async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], ensure_registry=True):
                pass


async def test_ensure_registry_when_absent_becomes_registrar(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor(
            registry_addrs=[reg_addr], ensure_registry=True
        ) as a:
            assert a.is_registrar


async def test_registry_transport_not_enabled_is_value_error(uds_dir: str) -> None:
    with trio.fail_after(2):
        with pytest.raises(ValueError, match="not in enable_transports"):
            async with tractor_reg.open_root_actor(
                registry_addrs=[(uds_dir, "reg.sock")], enable_transports=["tcp"]
            ):
                pass
        with pytest.raises(ValueError, match="unknown transport"):
            async with tractor_reg.open_root_actor(enable_transports=["quic"]):
                pass


async def test_nested_root_is_refused(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            with pytest.raises(RuntimeError, match="already runs"):
                async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
                    pass


async def test_arbiter_addr_is_type_error() -> None:
    with pytest.raises(TypeError, match="registry_addrs"):
        async with tractor_reg.open_root_actor(arbiter_addr=("127.0.0.1", 1616)):
            pass
    with pytest.raises(TypeError, match="unexpected keyword"):
        async with tractor_reg.open_root_actor(bogus=1):
            pass


def test_arbiter_alias_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="Registrar"):
        alias = tractor_reg.Arbiter
    assert alias is tractor_reg.Registrar
    assert not hasattr(tractor_reg, "get_arbiter")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tractor_reg.Registrar.is_registrar


async def test_bad_backend_url_fails_before_binding(reg_addr: tractor_reg.TCPAddress) -> None:
    with pytest.raises(tractor_reg.BackendURLError, match="nosuch"):
        async with tractor_reg.open_root_actor(
            registry_addrs=[reg_addr], registry_backend="nosuch://x"
        ):
            pass
    # the address was never bound
    with socket.socket() as sock:
        sock.bind(tuple(reg_addr))


async def test_backend_object_and_env(
    reg_addr: tractor_reg.TCPAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = tractor_reg.backends.MemoryBackend()
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor(
            registry_addrs=[reg_addr], registry_backend=backend
        ) as a:
            assert isinstance(a, tractor_reg.Registrar)
            assert a.backend is backend
            assert (await backend.lookup(a.name)) is not None
    monkeypatch.setenv("TRACTOR_REG_BACKEND", "bogus://")
    with pytest.raises(tractor_reg.BackendURLError):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            pass


async def test_registry_addrs_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("TRACTOR_REG_REGISTRY_ADDRS", f"tcp://127.0.0.1:{port}")
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor() as actor:
            assert actor.accept_addrs == [tractor_reg.TCPAddress("127.0.0.1", port)]
    monkeypatch.setenv("TRACTOR_REG_REGISTRY_ADDRS", "tcp://nonsense")
    with pytest.raises(ValueError):
        async with tractor_reg.open_root_actor():
            pass


async def test_uds_registrar_replaces_stale_socket_and_cleans_up(uds_dir: str) -> None:
    path = os.path.join(uds_dir, "reg.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a leftover file nobody listens on
    with trio.fail_after(10):
        async with tractor_reg.open_root_actor(registry_addrs=[(uds_dir, "reg.sock")]) as actor:
            assert actor.is_registrar
            assert actor.accept_addrs == [tractor_reg.UDSAddress(uds_dir, "reg.sock")]
            assert os.stat(path).st_mode & 0o777 == 0o600
    assert not os.path.exists(path)


async def test_multihomed_registrar_and_joiner(
    uds_dir: str, reg_addr: tractor_reg.TCPAddress
) -> None:
    uds = tractor_reg.UDSAddress(uds_dir, "reg.sock")
    with spawn(registrar_argv(str(reg_addr), str(uds))) as reg:
        reg.wait_line("READY")
        with trio.fail_after(10):
            async with tractor_reg.open_root_actor(registry_addrs=[uds, reg_addr]) as actor:
                assert not actor.is_registrar
                assert {a.transport for a in actor.accept_addrs} == {"tcp", "uds"}
                async with tractor_reg.get_registry(uds) as portal:
                    table = await _registry(portal)
                # both addresses arrived in one registration
                assert sorted(map(tuple, table[f"root.{actor.uuid}"])) == sorted(
                    tuple(a) for a in actor.accept_addrs
                )


def test_two_roots_racing_for_one_address(reg_addr: tractor_reg.TCPAddress) -> None:
    """Started together, exactly one becomes the registrar and the other joins it."""
    with (
        spawn(registrar_argv(str(reg_addr))) as first,
        spawn(registrar_argv(str(reg_addr))) as second,
    ):
        codes: list[str | int] = []
        for proc in (first, second):
            try:
                proc.wait_line("READY", timeout=10)
                codes.append("ready")
            except AssertionError:
                codes.append(proc.wait(10))
        # the CLI daemon insists on being the registrar (ensure_registry), so the loser
        # exits non-zero with a clear error instead of joining
        assert sorted(map(str, codes)) == ["1", "ready"], codes
