"""Tearing down a tree whose leaf is stuck in a synchronous call takes about one grace
period in all, leaves no process, process group or socket file behind; functions defined
in a script can be spawned from child actors at every depth."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import tractor_reg
from tests.compat_progs import teardown_tree
from tests.procs import pid_alive, python, spawn, wait_gone

PROGS = Path(__file__).resolve().parent / "compat_progs"
TREE = "tests.compat_progs.teardown_tree"
#: The root's reap grace in these tests, and how long the leaf blocks: far longer, so
#: that a tree that waited for the leaf (or left it running) cannot pass by luck.
GRACE = 2.0
BLOCK = 30.0
#: "About one grace period": the root's error or exit within this long of the trigger.
BOUND = GRACE + 1.5


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def assert_tree_gone(actors: list[list[Any]]) -> None:
    """Every process of the tree, its process group and its UDS socket files are gone."""
    for pid, pgid, socks in actors:
        wait_gone(pid, timeout=5)
        deadline = time.monotonic() + 5
        while group_members(pgid):
            assert time.monotonic() < deadline, f"group {pgid} left: {group_members(pgid)}"
            time.sleep(0.02)
        for sock in socks:
            assert not os.path.exists(sock), f"socket file {sock} left behind"


@pytest.mark.parametrize("trigger", ["error", "cancel"])
async def test_tree_with_blocked_grandchild_goes_down_within_one_grace(
    trigger: str, reg_addr: tractor_reg.TCPAddress, tmp_path: Path
) -> None:
    marker = str(tmp_path / "blocked")
    actors: list[list[Any]] = []
    started = 0.0
    with trio.fail_after(60):
        with pytest.raises(KeyError) if trigger == "error" else trio.CancelScope() as scope:
            async with tractor_reg.open_nursery(
                registry_addrs=[reg_addr], enable_transports=["tcp", "uds"]
            ) as an:
                an.reap_grace = GRACE
                async with trio.open_nursery() as tasks:
                    actors = await teardown_tree.start_blocked_tree(an, tasks, BLOCK, marker)
                    assert all(pid_alive(pid) for pid, _, _ in actors)
                    started = trio.current_time()
                    if trigger == "error":
                        raise KeyError("the root failed")
                    assert isinstance(scope, trio.CancelScope)
                    scope.cancel()
                    await trio.sleep_forever()
        elapsed = trio.current_time() - started
    assert elapsed < BOUND, f"the tree took {elapsed:.2f}s to go down (grace {GRACE}s)"
    assert_tree_gone(actors)


def test_ctrl_c_on_root_with_blocked_grandchild(
    reg_addr: tractor_reg.TCPAddress, tmp_path: Path
) -> None:
    marker = str(tmp_path / "blocked")
    script = str(PROGS / "teardown_root.py")
    with spawn(python(script, str(reg_addr), str(GRACE), marker)) as root:
        actors = json.loads(root.wait_line("TREE", timeout=30).split(" ", 1)[1])
        started = time.monotonic()
        root.signal(signal.SIGINT)
        assert root.wait(timeout=30) == 0, root.stderr_tail()
        elapsed = time.monotonic() - started
        assert root.wait_line("INTERRUPTED", timeout=5)
    assert elapsed < BOUND, f"the root took {elapsed:.2f}s to exit (grace {GRACE}s)"
    assert_tree_gone(actors)


async def test_sigterm_makes_a_child_reap_its_own_children(
    reg_addr: tractor_reg.TCPAddress, tmp_path: Path
) -> None:
    """A child that gets SIGTERM tears down (its stuck child included, socket file and
    all) and still ends as killed by SIGTERM, which its parent reports."""
    marker = str(tmp_path / "blocked")
    actors: list[list[Any]] = []
    with trio.fail_after(60), pytest.raises(tractor_reg.ActorCrashed, match="signal 15"):
        async with tractor_reg.open_nursery(
            registry_addrs=[reg_addr], enable_transports=["tcp", "uds"]
        ) as an:
            async with trio.open_nursery() as tasks:
                actors = await teardown_tree.start_blocked_tree(an, tasks, BLOCK, marker)
                os.kill(actors[0][0], signal.SIGTERM)
                await trio.sleep_forever()
    assert_tree_gone(actors)


async def test_refused_cancel_requests_cancel_nothing(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc")
            for bad in (-1, "soon", True, float("nan"), float("inf")):
                with pytest.raises(tractor_reg.RemoteActorError, match="budget") as info:
                    await portal.run_from_ns("self", "cancel", budget=bad)
                assert info.value.type_name == "ValueError"
            sibling = await an.start_actor("sibling", enable_modules=[TREE])
            assert await sibling.run(teardown_tree.cancel_peer, name="svc") == "RPCNotAllowed"
            assert await portal.run_from_ns("self", "ping") == list(portal.channel.aid.uid)
            assert set(an.children) == {portal.channel.aid.uid, sibling.channel.aid.uid}


def test_main_script_functions_spawned_from_children(reg_addr: tractor_reg.TCPAddress) -> None:
    script = str(PROGS / "spawn_main_from_child.py")
    with spawn(python(script, str(reg_addr))) as proc:
        line = proc.wait_line("RESULT", timeout=60)
        assert json.loads(line.split(" ", 1)[1]) == ["__mp_main__", ["__mp_main__", 2], 11]
        assert proc.wait(30) == 0, proc.stderr_tail()


async def test_child_without_parent_script_exposes_no_main(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """Enabling ``__main__`` in a child whose parent is no script (here: pytest) gives an
    empty module with a clear refusal, never the child's own entry point."""
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=["__main__"])
            for ns in ("__main__", "__mp_main__"):
                with pytest.raises(tractor_reg.RemoteActorError) as info:
                    await portal.run_from_ns(ns, "main")
                assert info.value.type_name == "RPCNotAllowed"
                assert "did not load its parent's script" in str(info.value)
