"""Spawning, supervision and reaping of child actor processes."""

from __future__ import annotations

import os
import signal
import textwrap

import pytest
import trio

import tractor_reg
from tests.procs import pid_alive, python, spawn, wait_gone
from tests.rpc_targets import funcs

FUNCS = "tests.rpc_targets.funcs"


async def test_start_actor_run_and_identity(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            assert await portal.run(funcs.add, a=2, b=3) == 5
            assert await portal.run(funcs.echo, value={"k": [1, "x"]}) == {"k": [1, "x"]}
            assert await portal.run_from_ns(FUNCS, "add", a=1, b=1) == 2
            aid = portal.channel.aid
            assert aid.name == "svc"
            assert aid.uid == (aid.name, aid.uuid)
            assert aid.is_registrar is False
            child_pid = await portal.run(funcs.pid)
            assert aid.pid == child_pid != os.getpid()
            assert await portal.run(funcs.whoami) == [aid.name, aid.uuid]
            assert await portal.cancel_actor()
        wait_gone(child_pid)


async def test_remote_error_is_boxed(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            with pytest.raises(tractor_reg.RemoteActorError) as info:
                await portal.run(funcs.boom, message="kaput")
            err = info.value
            assert err.type_name == "ValueError"
            assert err.remote_message == "kaput"
            assert "boom" in err.remote_traceback
            assert err.src_uid == portal.channel.aid.uid
            # the actor survives its function's failure
            assert await portal.run(funcs.add, a=1, b=1) == 2


async def test_rpc_limited_to_enabled_modules(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[])
            # a module that is not enabled: ModuleNotExposed, an RPCNotAllowed
            with pytest.raises(tractor_reg.RemoteActorError) as info:
                await portal.run(funcs.add, a=1, b=2)
            assert info.value.type_name == "ModuleNotExposed"
            assert info.value.boxed_type is tractor_reg.ModuleNotExposed
            with pytest.raises(tractor_reg.RemoteActorError) as info:
                await portal.run_from_ns("os", "getpid")
            assert info.value.boxed_type is tractor_reg.ModuleNotExposed
            with pytest.raises(tractor_reg.RemoteActorError) as info:
                await portal.run_from_ns("self", "register_actor", uid=["a", "b"], addr=["h", 1])
            assert info.value.type_name == "RPCNotAllowed"


async def test_non_module_level_function_refused(reg_addr: tractor_reg.TCPAddress) -> None:
    async def nested() -> None:
        return None

    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            with pytest.raises(TypeError, match="module-level"):
                await portal.run(nested)
            with pytest.raises(TypeError):
                await an.run_in_actor(lambda: None)


async def test_run_in_actor_result(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portals = [
                await an.run_in_actor(funcs.add, name=f"adder{i}", a=i, b=10) for i in range(3)
            ]
            assert [await p.result() for p in portals] == [10, 11, 12]
            # result() can be awaited again
            assert await portals[0].result() == 10


async def test_run_in_actor_error_via_result(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.run_in_actor(funcs.boom, message="nope")
            with pytest.raises(tractor_reg.RemoteActorError, match="nope") as info:
                await portal.result()
            assert info.value.type_name == "ValueError"


async def test_unconsumed_run_in_actor_error_raises_at_exit(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(30), pytest.raises(tractor_reg.RemoteActorError, match="unseen"):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            await an.run_in_actor(funcs.boom, message="unseen")


async def test_child_killed_mid_call_surfaces_as_remote_error(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.run_in_actor(funcs.crash_hard)
            with pytest.raises(tractor_reg.ActorCrashed, match="signal 9") as info:
                await portal.result()
            assert isinstance(info.value, tractor_reg.RemoteActorError)


async def test_daemon_crash_cancels_block_and_raises(reg_addr: tractor_reg.TCPAddress) -> None:
    # The body never ends on its own: only the crash, surfacing as ActorCrashed, gets the
    # test past the block (fail_after turns a body left running into a failure).
    with trio.fail_after(30), pytest.raises(tractor_reg.ActorCrashed, match="svc"):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            child = await portal.run(funcs.pid)
            os.kill(child, signal.SIGKILL)
            await trio.sleep_forever()
    wait_gone(child)


async def test_error_in_body_reaps_children(reg_addr: tractor_reg.TCPAddress) -> None:
    pids: list[int] = []
    with trio.fail_after(30), pytest.raises(KeyError):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            for i in range(2):
                portal = await an.start_actor(f"svc{i}", enable_modules=[FUNCS])
                pids.append(await portal.run(funcs.pid))
            raise KeyError("body failed")
    for pid in pids:
        assert not pid_alive(pid)


async def test_cancellation_reaps_children(reg_addr: tractor_reg.TCPAddress) -> None:
    pids: list[int] = []
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
                portal = await an.start_actor("svc", enable_modules=[FUNCS])
                pids.append(await portal.run(funcs.pid))
                scope.cancel()
                await trio.sleep_forever()
    assert scope.cancelled_caught
    assert pids and not pid_alive(pids[0])


async def test_exit_reaps_daemons_and_uds_files(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(
            registry_addrs=[reg_addr], enable_transports=["tcp", "uds"]
        ) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            addrs = [tractor_reg.wrap_address(a) for a in await portal.run(funcs.accept_addrs)]
            pid = await portal.run(funcs.pid)
    uds = [a for a in addrs if isinstance(a, tractor_reg.UDSAddress)]
    assert uds, addrs
    assert not os.path.exists(uds[0].path)
    assert not pid_alive(pid)


async def test_nursery_cancel_method(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            pid = await portal.run(funcs.pid)
            await an.cancel()
            assert not pid_alive(pid)
            assert an.children == {}


async def test_grandchildren(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(40):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("middle", enable_modules=[FUNCS])
            [grandchild_pid] = await portal.run(funcs.spawn_grandchild, name="leaf")
    assert not pid_alive(grandchild_pid)


async def test_root_kwargs_ignored_inside_running_root(reg_addr: tractor_reg.TCPAddress) -> None:
    # As upstream: a nested open_nursery() takes the root's keywords and leaves the
    # running actor as it is; a keyword open_root_actor() does not know is still refused.
    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]) as root:
            async with tractor_reg.open_nursery(name="x", loglevel="info") as an:
                portal = await an.start_actor("nested", enable_modules=[FUNCS])
                assert await portal.run(funcs.add, a=1, b=2) == 3
            assert tractor_reg.current_actor() is root
            assert root.name == "root"
            with pytest.raises(TypeError, match="unexpected keyword arguments \\['bogus'\\]"):
                async with tractor_reg.open_nursery(bogus=1):
                    pass


MAIN_SCRIPT = textwrap.dedent(
    """
    import os, sys, trio
    import tractor_reg as tractor

    async def double(x):
        return x * 2

    async def main():
        reg = [tractor.parse_address(sys.argv[1])]
        async with tractor.open_nursery(registry_addrs=reg) as an:
            portal = await an.run_in_actor(double, x=21)
            print("RESULT", await portal.result(), flush=True)
            daemon = await an.start_actor("worker", enable_modules=[__name__])
            print("DAEMON", await daemon.run(double, x=5), flush=True)

    if __name__ == "__main__":
        trio.run(main)
    """
)


def test_functions_defined_in_main_script_work_in_children(
    tmp_path: object, reg_addr: tractor_reg.TCPAddress
) -> None:
    script = os.path.join(str(tmp_path), "main_script.py")
    with open(script, "w") as fh:
        fh.write(MAIN_SCRIPT)
    with spawn(python(script, str(reg_addr))) as proc:
        assert proc.wait_line("RESULT") == "RESULT 42"
        assert proc.wait_line("DAEMON") == "DAEMON 10"
        assert proc.wait(30) == 0, proc.stderr_tail()


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import os, sys, trio
    import tractor_reg as tractor
    from tests.rpc_targets import funcs

    async def main():
        reg = [tractor.parse_address(sys.argv[1])]
        async with tractor.open_nursery(registry_addrs=reg, enable_transports=["tcp", "uds"]) as an:
            pids, socks = [], []
            for i in range(2):
                p = await an.start_actor(f"w{i}", enable_modules=["tests.rpc_targets.funcs"])
                pids.append(await p.run(funcs.pid))
                addrs = await p.run(funcs.accept_addrs)
                socks += [a[0] + "/" + a[1] for a in addrs if isinstance(a[1], str)]
            print("PIDS", *pids, flush=True)
            print("SOCKS", *socks, flush=True)
            await trio.sleep_forever()

    if __name__ == "__main__":
        try:
            trio.run(main)
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
    """
)


def test_ctrl_c_reaps_every_child(tmp_path: object, reg_addr: tractor_reg.TCPAddress) -> None:
    script = os.path.join(str(tmp_path), "ctrl_c.py")
    with open(script, "w") as fh:
        fh.write(CTRL_C_SCRIPT)
    with spawn(python(script, str(reg_addr))) as proc:
        pids = [int(p) for p in proc.wait_line("PIDS").split()[1:]]
        socks = proc.wait_line("SOCKS").split()[1:]
        assert len(pids) == 2 and len(socks) == 2
        assert all(os.path.exists(s) for s in socks)
        proc.signal(signal.SIGINT)
        assert proc.wait_line("INTERRUPTED", timeout=20)
        assert proc.wait(20) == 0
        for pid in pids:
            wait_gone(pid)
        assert not any(os.path.exists(s) for s in socks)


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, trio
    import tractor_reg as tractor
    from tests.rpc_targets import funcs

    async def main():
        reg = [tractor.parse_address(sys.argv[1])]
        async with tractor.open_nursery(registry_addrs=reg) as an:
            p = await an.start_actor("orphan", enable_modules=["tests.rpc_targets.funcs"])
            print("PID", await p.run(funcs.pid), flush=True)
            await trio.sleep_forever()

    if __name__ == "__main__":
        trio.run(main)
    """
)


def test_child_exits_when_parent_is_killed(
    tmp_path: object, reg_addr: tractor_reg.TCPAddress
) -> None:
    script = os.path.join(str(tmp_path), "orphan.py")
    with open(script, "w") as fh:
        fh.write(ORPHAN_SCRIPT)
    with spawn(python(script, str(reg_addr))) as proc:
        child = int(proc.wait_line("PID").split()[1])
        # SIGKILL only the parent: the child lives in its own session and must notice.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_gone(child, timeout=15)
