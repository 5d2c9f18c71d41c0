"""Upstream tractor's runtime surface: entry-point keywords, the root's name, portals,
channels, runtime variables and ``run_daemon``, exercised with real child processes."""

from __future__ import annotations

import functools
import os
import signal
import sys
import tempfile
import time
from typing import Any

import pytest
import trio

import tractor_reg as tractor
from tests.procs import Proc, pid_alive, python, spawn
from tests.rpc_targets import compat_funcs, funcs

COMPAT = "tests.rpc_targets.compat_funcs"
FUNCS = "tests.rpc_targets.funcs"


async def _registry_is_free(addr: tractor.TCPAddress) -> None:
    """Nothing was left bound at ``addr``: a fresh root can become the registrar there."""
    async with tractor.open_root_actor(registry_addrs=[addr]) as root:
        assert root.is_registrar


# -- 1. entry-point keywords -------------------------------------------------------------------


async def test_upstream_root_keywords_accepted(reg_addr: tractor.TCPAddress) -> None:
    with trio.fail_after(20):
        async with tractor.open_nursery(
            registry_addrs=[reg_addr],
            debug_mode=False,
            start_method="trio",
            hide_tb=False,
            maybe_enable_greenback=False,
            enable_stack_on_sig=False,
            debug_filter=lambda _exc: False,
            rpc_module_paths=[FUNCS],
            enable_transports=["tcp"],
            ensure_registry=True,
        ) as an:
            root = tractor.current_actor()
            assert root.is_registrar
            assert FUNCS in root.enable_modules
            portal = await an.start_actor("keyworded", enable_modules=[FUNCS])
            assert await portal.run(funcs.add, a=2, b=3) == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"debug_mode": True}, NotImplementedError, "debug_mode=True .* the debugger"),
        ({"maybe_enable_greenback": True}, NotImplementedError, "the debugger"),
        ({"enable_stack_on_sig": True}, NotImplementedError, "the debugger"),
        ({"start_method": "mp_spawn"}, ValueError, "start_method='mp_spawn' is not supported"),
        ({"start_method": "forkserver"}, ValueError, "'trio'"),
        ({"loglevel": "chatty"}, ValueError, "unknown log level 'chatty'"),
        ({"arbiter_addr": ("127.0.0.1", 1)}, TypeError, "registry_addrs"),
        ({"accept_addrs": [], "tpt_bind_addrs": []}, TypeError, "not both"),
        ({"tpt_bind_addrs": "tcp://127.0.0.1:0"}, TypeError, "list of addresses"),
        ({"enable_modules": "mod"}, TypeError, "not a str"),
    ],
)
async def test_bad_root_keywords_refused_before_binding(
    reg_addr: tractor.TCPAddress, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with trio.fail_after(20):
        with pytest.raises(error, match=match) as caught:
            async with tractor.open_root_actor(registry_addrs=[reg_addr], **kwargs):
                pytest.fail("the root booted")
        # ours, except TypeErrors (Python raises those for unknown keywords too)
        assert isinstance(caught.value, tractor.TractorRegError) or error is TypeError
        await _registry_is_free(reg_addr)


async def test_env_registry_of_another_transport_is_named(
    monkeypatch: pytest.MonkeyPatch, reg_addr: tractor.TCPAddress
) -> None:
    monkeypatch.setenv("TRACTOR_REG_REGISTRY_ADDRS", f"tcp://127.0.0.1:{reg_addr.port}")
    with pytest.raises(ValueError, match="TRACTOR_REG_REGISTRY_ADDRS address tcp://"):
        async with tractor.open_root_actor(enable_transports=["uds"]):
            pass


async def test_non_goal_error_is_one_type(reg_addr: tractor.TCPAddress) -> None:
    with pytest.raises(tractor.NonGoalError) as caught:
        async with tractor.open_root_actor(registry_addrs=[reg_addr], debug_mode=True):
            pass
    assert caught.value.non_goal == "the debugger"
    assert caught.value.feature == "debug_mode=True"


async def test_tpt_bind_addrs_is_accept_addrs(reg_addr: tractor.TCPAddress, uds_dir: str) -> None:
    """A joining root listens where ``tpt_bind_addrs`` says (upstream's name)."""
    bind = tractor.UDSAddress(uds_dir, "joiner.sock")
    with trio.fail_after(30), spawn(_registrar_argv(reg_addr)) as registrar:
        registrar.wait_line("READY")
        async with tractor.open_root_actor(
            registry_addrs=[reg_addr], enable_transports=["tcp", "uds"], tpt_bind_addrs=[bind]
        ) as root:
            assert not root.is_registrar
            assert root.accept_addrs == [bind]
            assert root.accept_addr == bind
            async with tractor.query_actor("root") as (addr, _):
                assert addr == bind


def _registrar_argv(addr: tractor.TCPAddress) -> list[str]:
    return python(
        "-c",
        "import sys, trio, tractor_reg as t\n"
        "async def main():\n"
        f"    async with t.open_root_actor(name='reg', registry_addrs=[{tuple(addr)!r}]):\n"
        "        print('READY', flush=True)\n"
        "        await trio.sleep_forever()\n"
        "trio.run(main)\n",
    )


async def test_start_actor_upstream_keywords(reg_addr: tractor.TCPAddress, uds_dir: str) -> None:
    bind = tractor.UDSAddress(uds_dir, "kw-child.sock")
    workdir = tempfile.mkdtemp(prefix="tr-cwd-")
    try:
        with trio.fail_after(30):
            async with tractor.open_nursery(
                registry_addrs=[reg_addr], enable_transports=["tcp", "uds"]
            ) as an:
                portal = await an.start_actor(
                    "kw-child",
                    rpc_module_paths=[COMPAT],
                    bind_addrs=[bind],
                    loglevel="INFO",
                    debug_mode=False,
                    infect_asyncio=False,
                    inherit_parent_main=False,
                    nursery=None,
                    proc_kwargs={"env": {**os.environ, "TR_COMPAT_MARK": "yes"}, "cwd": workdir},
                )
                facts = await portal.run(compat_funcs.runtime_facts)
                assert facts["accept_addr"] == list(bind)
                assert portal.chan.aid.accept_addrs == (bind,)
                assert facts["loglevel"] == "info"
                assert facts["env"] == "yes"
                assert os.path.realpath(facts["cwd"]) == os.path.realpath(workdir)
                one_shot = await an.run_in_actor(
                    compat_funcs.hello,
                    name="kw-oneshot",
                    rpc_module_paths=[FUNCS],
                    loglevel="warning",
                    infect_asyncio=False,
                    inherit_parent_main=True,
                    proc_kwargs={},
                )
                assert await one_shot.wait_for_result() == "hello from kw-oneshot"
    finally:
        os.rmdir(workdir)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loglevel": "loud"}, ValueError, "unknown log level 'loud'"),
        ({"infect_asyncio": True}, NotImplementedError, "asyncio infection"),
        ({"debug_mode": True}, NotImplementedError, "the debugger"),
        ({"proc_kwargs": {"stdin": None}}, TypeError, "proc_kwargs \\['stdin'\\]"),
        ({"enable_transports": ["quic"]}, ValueError, "unknown transport 'quic'"),
        ({"bind_addrs": ["tcp://127.0.0.1:x"]}, ValueError, "malformed"),
    ],
)
async def test_bad_child_keywords_fail_in_the_parent(
    reg_addr: tractor.TCPAddress, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """A bad child setting is an error in the parent; no process is started for it and
    the children already running keep serving."""
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            keeper = await an.start_actor("keeper", enable_modules=[FUNCS])
            with pytest.raises(error, match=match):
                await an.start_actor("bad", enable_modules=[FUNCS], **kwargs)
            if "debug_mode" not in kwargs and "enable_transports" not in kwargs:
                with pytest.raises(error, match=match):
                    await an.run_in_actor(funcs.add, a=1, b=1, **kwargs)
            assert list(an.children) == [keeper.chan.aid.uid]
            assert await keeper.run(funcs.add, a=1, b=1) == 2
            async with tractor.find_actor("bad") as portal:
                assert portal is None


async def _registered(name: str) -> bool:
    async with tractor.find_actor(name) as portal:
        return portal is not None


async def test_oneshot_stays_reachable_until_the_block_ends(
    reg_addr: tractor.TCPAddress,
) -> None:
    """As upstream: a one-shot child stays up after its function returned, until the
    nursery's block ends, so peers that looked it up can still call it (upstream's
    two-actor scene raced when it was stopped at once)."""
    with trio.fail_after(40):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.run_in_actor(compat_funcs.hello, name="brief")
            assert await portal.wait_for_result() == "hello from brief"
            # Long enough for a child stopped on return to be gone from the registry.
            with trio.move_on_after(1.5):
                while await _registered("brief"):
                    await trio.sleep(0.05)
            async with tractor.find_actor("brief") as found:
                assert found is not None, "the one-shot child left before the block ended"
                assert await found.run(compat_funcs.hello) == "hello from brief"
                pid = await found.run(compat_funcs.own_pid)
    assert not pid_alive(pid)


async def test_oneshot_failures_reach_the_parent_clearly(
    reg_addr: tractor.TCPAddress, uds_dir: str
) -> None:
    """Arguments that cannot be sent, bad names and a nursery's own cancel: each a clear
    error in the parent, no process started for nothing, nothing reported as a crash."""
    with trio.fail_after(40):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            with pytest.raises(TypeError, match="arguments cannot be sent"):
                await an.run_in_actor(compat_funcs.take, data=object())
            for bad in (123, "", "nul\0name"):
                with pytest.raises(ValueError, match="actor name"):
                    await an.run_in_actor(compat_funcs.hello, name=bad)  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="actor name"):
                    await an.start_actor(bad)  # type: ignore[arg-type]
            assert an.children == {}
            # the nursery stopping a running one-shot child is not a crash
            stopped = await an.run_in_actor(compat_funcs.forever, name="forever")
            await an.cancel()
            with pytest.raises(tractor.ContextCancelled, match="cancelled by its nursery"):
                await stopped.wait_for_result()
        # (leaving the block raised nothing)
        async with tractor.open_nursery(
            registry_addrs=[tractor.UDSAddress(uds_dir, "r.sock")], enable_transports=["uds"]
        ) as an:
            with pytest.raises(ValueError, match="UDS"):
                await an.start_actor("slash/name")
            with pytest.raises(ValueError, match="UDS path"):
                await an.start_actor("n" * 120)
            assert an.children == {}


async def test_oversized_messages_and_unprintable_errors_keep_the_channel(
    reg_addr: tractor.TCPAddress,
) -> None:
    """A frame over the size limit is never sent (the peer would drop the connection),
    and an exception whose __str__ fails still goes back boxed."""
    limit = 1024 * 1024
    with trio.fail_after(40):
        async with tractor.open_nursery(registry_addrs=[reg_addr], max_frame_size=limit) as an:
            portal = await an.start_actor("sizes", enable_modules=[COMPAT])
            with pytest.raises(tractor.FrameTooLarge, match="exceeds the maximum frame size"):
                await portal.run(compat_funcs.take, data=b"x" * (limit + 1))
            with pytest.raises(tractor.RemoteActorError, match="return value not sent") as big:
                await portal.run(compat_funcs.big, size=limit + 1)
            assert big.value.boxed_type is tractor.FrameTooLarge
            with pytest.raises(tractor.RemoteActorError, match="str\\(\\) of _Unprintable"):
                await portal.run(compat_funcs.raise_unprintable)
            # the same channel and the child are fine
            assert await portal.run(compat_funcs.take, data=b"x" * 1000) == 1000
            assert portal.chan.connected()


async def test_a_busy_parent_does_not_stall_its_childrens_stderr(
    reg_addr: tractor.TCPAddress, uds_dir: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A child writing much to stderr while its parent's trio loop is blocked (a CPU-bound
    root, as upstream's parallelism examples are) is not held up until the parent runs."""
    go = os.path.join(uds_dir, "go")
    done = os.path.join(uds_dir, "spewed")
    with trio.fail_after(40):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("spewer", enable_modules=[COMPAT])
            async with trio.open_nursery() as tn:
                tn.start_soon(
                    functools.partial(
                        portal.run, compat_funcs.spew_stderr, size=1 << 20, go=go, done=done
                    )
                )
                await trio.sleep(0.05)  # let the call go out
                # Block this trio loop (nothing of the runtime runs) while the child
                # writes 1 MiB to stderr: it finishes only if something else drains it.
                with open(go, "w"):
                    pass
                deadline = time.monotonic() + 10
                while not os.path.exists(done) and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert os.path.exists(done), "the child stayed blocked on its stderr"
    assert capfd.readouterr().err.count("spew ") >= 1000


def _flags(an: tractor.ActorNursery) -> tuple[bool, bool]:
    return an.cancel_called, an.cancelled_caught


async def test_nursery_cancel_flags(reg_addr: tractor.TCPAddress, uds_dir: str) -> None:
    started = os.path.join(uds_dir, "blocked")
    with trio.fail_after(40):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            assert _flags(an) == (False, False)
            await an.start_actor("polite", enable_modules=[COMPAT])
            await an.cancel()
            assert _flags(an) == (True, True)
            an.reap_grace = 0.5
            stuck = await an.start_actor("stuck", enable_modules=[COMPAT])

            async def hold() -> None:
                with pytest.raises(tractor.TransportClosed):  # it gets killed
                    await stuck.run(compat_funcs.block_sync, seconds=30, started=started)

            async with trio.open_nursery() as tn:
                tn.start_soon(hold)
                while not os.path.exists(started):
                    await trio.sleep(0.01)
                # it cannot acknowledge a cancel while blocked
                assert await stuck.cancel_actor(timeout=0.2) is False
                with pytest.raises(tractor.ActorTooSlowError, match=r"within 0\.2s"):
                    await stuck.cancel_actor(timeout=0.2, raise_on_timeout=True)
                await an.cancel()
            # the stuck child needed a signal
            assert _flags(an) == (True, False)
            assert not tractor.current_actor().cancel_called


# -- 2. the root is called 'root' ---------------------------------------------------------------


async def test_registrar_root_is_named_root_and_found_by_name(
    reg_addr: tractor.TCPAddress,
) -> None:
    with trio.fail_after(40):
        async with tractor.open_nursery(registry_addrs=[reg_addr], enable_modules=[COMPAT]) as an:
            root = tractor.current_actor()
            assert root.is_registrar
            assert root.name == "root"
            # from the root itself
            async with tractor.find_actor("root") as portal:
                assert portal is not None
                assert await portal.run(compat_funcs.hello) == "hello from root"
            async with tractor.wait_for_actor("root") as portal:
                assert portal.chan.aid.uid == root.uid
            # from a child
            child = await an.start_actor("seeker", enable_modules=[COMPAT])
            assert await child.run(compat_funcs.find_and_call, name="root") == "hello from root"
            # from another program
            with spawn(python("-m", "tests.rpc_targets.probe_prog", str(reg_addr), "root")) as p:
                assert await trio.to_thread.run_sync(p.wait_line, "FOUND") == (
                    "FOUND hello from root"
                )
                assert await trio.to_thread.run_sync(p.wait) == 0


async def test_lookup_connections_are_not_handed_to_other_lookups(
    reg_addr: tractor.TCPAddress,
) -> None:
    """A connection a peer opened for its own find_actor block closes when that block
    ends: a lookup at the other end must not hand it out (it led to a dead channel)."""
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            asker = await an.start_actor("asker", enable_modules=[COMPAT])
            await an.start_actor("target", enable_modules=[COMPAT])
            where = await asker.run(compat_funcs.ask_to_find_me, target="target")
            # the target dialled the asker afresh, at an address the asker listens on
            assert tuple(where) in asker.chan.aid.accept_addrs


async def test_joining_root_is_named_root(reg_addr: tractor.TCPAddress) -> None:
    with trio.fail_after(30), spawn(_registrar_argv(reg_addr)) as registrar:
        registrar.wait_line("READY")
        async with tractor.open_root_actor(registry_addrs=[reg_addr]) as root:
            assert not root.is_registrar
            assert root.name == "root"


# -- 4. portals, channels, actors, runtime variables ----------------------------------------


async def test_portal_and_channel_surface(reg_addr: tractor.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("surface", enable_modules=[COMPAT, FUNCS])
            assert portal.chan is portal.channel
            assert portal.actor is tractor.current_actor()
            chan = portal.chan
            assert chan.connected()
            assert chan.uid == chan.aid.uid == ("surface", chan.aid.uuid)
            # the child dialled us: raddr is its end of the TCP connection
            assert isinstance(chan.raddr, tractor.TCPAddress)
            assert chan.raddr.host == "127.0.0.1"
            assert chan.raddr.port > 0
            assert isinstance(chan.laddr, tractor.TCPAddress)
            assert chan.laddr in tractor.current_actor().accept_addrs
            with pytest.warns(DeprecationWarning, match="Portal.run\\(namespace"):
                assert await portal.run(FUNCS, "add", a=4, b=5) == 9
            with pytest.raises(TypeError, match="second argument"):
                await portal.run(FUNCS)
            with pytest.raises(TypeError, match="keywords only"):
                await portal.run(funcs.add, "extra")
            # as upstream: no final result from a daemon, a warning and the NoResult marker
            assert await portal.wait_for_result() is tractor.NoResult
            assert await portal.result() is tractor.NoResult
            # upstream's Channel.from_addr(): a connected, handshaken channel of our own
            direct = await tractor.Channel.from_addr(chan.aid.accept_addrs[0])
            try:
                assert direct.aid.uid == chan.aid.uid
                assert await tractor.Portal(direct).run(compat_funcs.hello) == (
                    "hello from surface"
                )
            finally:
                await direct.aclose()
            assert not direct.connected()
            with pytest.raises(tractor.NonGoalError, match="apply_codec"):
                chan.apply_codec()
            # as upstream code writes them: fails by name, never a TypeError
            upstream_style: Any = portal
            with pytest.raises(tractor.NonGoalError, match="open_context"):
                async with upstream_style.open_context(compat_funcs.hello):
                    pass
            with pytest.raises(NotImplementedError, match="streaming and contexts"):
                async with upstream_style.open_stream_from(compat_funcs.hello):
                    pass
            assert await portal.cancel_actor(timeout=5) is True
            with trio.fail_after(10):
                await chan.closed_event.wait()
            assert not chan.connected()


async def test_uds_child_channel_raddr(reg_addr: tractor.TCPAddress, uds_dir: str) -> None:
    registry = tractor.UDSAddress(uds_dir, "registry.sock")
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[registry], enable_transports=["uds"]) as an:
            portal = await an.start_actor("uds-kid", enable_modules=[COMPAT])
            raddr = portal.chan.raddr
            assert isinstance(raddr, tractor.UDSAddress)
            # As upstream: the listening socket file the child's connection came in on,
            # and the child's pid as the kernel reports it.
            assert raddr in tractor.current_actor().accept_addrs
            assert raddr.proto_key == "uds"
            assert raddr.maybe_pid == portal.chan.aid.pid
            assert raddr.sockpath == raddr.bindspace / raddr.filename
            # find_actor's default enable_transports=['tcp'] still finds a UDS-only actor
            seeker = await an.start_actor("uds-seeker", enable_modules=[COMPAT])
            assert await seeker.run(compat_funcs.find_and_call, name="uds-kid") == (
                "hello from uds-kid"
            )


async def test_runtime_vars_and_actor_attributes(reg_addr: tractor.TCPAddress) -> None:
    assert tractor.is_root_process()
    assert tractor.get_runtime_vars()["_is_root"] is False
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr], loglevel="warning") as an:
            root = tractor.current_actor()
            rtv = tractor.get_runtime_vars()
            assert rtv["_is_root"] is True
            assert rtv["_root_mailbox"] == tuple(root.accept_addrs[0])
            assert rtv["_registry_addrs"] == [tuple(reg_addr)]
            assert rtv["_debug_mode"] is False
            assert tractor.debug_mode() is False
            assert root.loglevel == "warning"
            assert root.registry_addrs == [reg_addr]
            assert root.is_arbiter is root.is_registrar is True
            assert root.is_infected_aio() is False
            with pytest.raises(RuntimeError, match="no parent"):
                root.get_parent()
            # the returned dict is a copy
            rtv["_is_root"] = False
            assert tractor.get_runtime_vars()["_is_root"] is True

            portal = await an.run_in_actor(compat_funcs.runtime_facts, name="facts")
            facts = await portal.wait_for_result()
            assert facts["is_root_process"] is False
            assert facts["name"] == "facts"
            assert facts["loglevel"] == "warning"  # inherited from the root
            assert facts["rtv_is_root"] is False
            assert facts["rtv_root_mailbox"] == list(root.accept_addrs[0])
            assert facts["rtv_registry_addrs"] == [list(reg_addr)]
            assert facts["registry_addrs"] == [list(reg_addr)]
            assert facts["parent_name"] == "root"
    assert tractor.get_runtime_vars() == tractor.get_runtime_vars(clear_values=True)
    fresh = tractor.get_runtime_vars(as_dict=False)
    assert isinstance(fresh, tractor.RuntimeVars)
    assert fresh._is_root is False
    assert fresh._root_mailbox == (None, None)


async def test_run_daemon(reg_addr: tractor.TCPAddress) -> None:
    """``run_daemon`` serves its modules until SIGINT, then unregisters and exits."""
    with trio.fail_after(40):
        async with tractor.open_root_actor(name="observer", registry_addrs=[reg_addr]):
            daemon: Proc
            with spawn(python("-m", "tests.rpc_targets.daemon_prog", str(reg_addr))) as daemon:
                daemon.wait_line("STARTING")
                async with tractor.wait_for_actor("root") as portal:
                    assert await portal.run(compat_funcs.hello) == "hello from root"
                    assert portal.chan.aid.pid == daemon.pid
                daemon.signal(signal.SIGINT)
                code = await trio.to_thread.run_sync(daemon.wait)
                assert code != 0 or not pid_alive(daemon.pid)
                async with tractor.find_actor("root") as portal:
                    assert portal is None, daemon.stderr_tail()


def test_run_daemon_refuses_missing_module() -> None:
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        tractor.run_daemon(["no_such_module_here"])
    with pytest.raises(TypeError, match="not a str"):
        tractor.run_daemon("tests.rpc_targets.compat_funcs")


# -- out-of-scope names fail by name, not with AttributeError --------------------------------


async def test_non_goal_names_raise_not_implemented() -> None:
    @tractor.context
    async def ctx_fn(ctx: tractor.Context) -> None:
        pass

    @tractor.context()
    async def ctx_fn2(ctx: tractor.Context) -> None:
        pass

    @tractor.stream
    async def stream_fn() -> None:
        pass

    assert ctx_fn.__name__ == "ctx_fn" and ctx_fn2.__name__ == "ctx_fn2"
    assert stream_fn.__name__ == "stream_fn"
    for make in (tractor.Context, tractor.MsgStream):
        with pytest.raises(tractor.NonGoalError, match="streaming and contexts"):
            make()
    with pytest.raises(tractor.NonGoalError, match="streaming and contexts"):
        tractor.current_ipc_ctx()
    for debugger in (tractor.pause, tractor.breakpoint, tractor.post_mortem):
        with pytest.raises(tractor.NonGoalError, match="the debugger"):
            await debugger()
    with pytest.raises(tractor.NonGoalError, match="the debugger"):
        tractor.pause_from_sync()
    with pytest.raises(tractor.NonGoalError, match="asyncio infection"):
        await tractor.to_asyncio.run_task(lambda: None)
    with pytest.raises(tractor.NonGoalError, match="asyncio infection"):
        tractor.to_asyncio.open_channel_from(lambda: None)
    with pytest.raises(tractor.NonGoalError, match=r"tractor\.msg\.NamespacePath"):
        _ = tractor.msg.NamespacePath
    assert not hasattr(tractor.msg, "__wrapped__")
    assert tractor.msg.Aid is tractor.Aid
    assert sys.modules["tractor_reg.msg"] is tractor.msg
