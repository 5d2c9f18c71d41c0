"""SIGTERM ends a root actor under a plain ``trio.run`` as cleanly as Ctrl-C: it
unregisters at once (long before its lease would run out), reaps its child actors,
removes its socket files and then ends as killed by SIGTERM. A program that installed
its own SIGTERM handler keeps it."""

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
from tests.procs import Proc, eventually, python, reader, registrar_argv, spawn, wait_ready
from tests.test_teardown_compat import assert_tree_gone

PROG = str(Path(__file__).resolve().parent / "compat_progs" / "sigterm_root.py")
#: The root's lease: far longer than any wait below, so that an entry that disappears
#: in time was unregistered, not expired.
LEASE = 60.0
#: How soon after SIGTERM the entry must be gone and the process ended.
PROMPT = 5.0


def root_argv(reg: tractor_reg.TCPAddress, *extra: str) -> list[str]:
    return python(PROG, str(reg), str(LEASE), *extra)


def ready(proc: Proc) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(proc.wait_line("READY", timeout=30).split(" ", 1)[1])
    return doc


async def entries(reg: tractor_reg.TCPAddress) -> list[dict[str, Any]]:
    async with reader(reg, "sigterm") as peer:
        found: list[dict[str, Any]] = await peer.reg("list_entries")
        return found


def uuids(found: list[dict[str, Any]]) -> set[str]:
    return {e["uuid"] for e in found}


async def test_sigterm_unregisters_a_joined_root_and_reaps_its_children(
    reg_addr: tractor_reg.TCPAddress, uds_dir: str
) -> None:
    env = {"XDG_RUNTIME_DIR": uds_dir}
    with spawn(registrar_argv(str(reg_addr), extra=["--lease-ttl", str(LEASE)])) as registrar:
        wait_ready(registrar)
        with spawn(root_argv(reg_addr), env=env) as root:
            with trio.fail_after(60):
                doc = await trio.to_thread.run_sync(ready, root)
                assert not doc["is_registrar"]
                listed = await entries(reg_addr)
                assert doc["uuid"] in uuids(listed), listed
                assert all(e["expires_at"] - time.time() > LEASE / 2 for e in listed)
                # the root and its child each hold a Unix socket file
                assert all(socks for _, _, socks in doc["actors"]), doc
                root.signal(signal.SIGTERM)
                await eventually(
                    "the root's entry is gone from the registrar",
                    lambda: entries(reg_addr),
                    lambda found: doc["uuid"] not in uuids(found),
                    PROMPT,
                    root,
                )
                assert await root.await_exit(PROMPT) == -signal.SIGTERM, root.stderr_tail()
            assert "CANCELLED" in await trio.to_thread.run_sync(root.wait_line, "CANCELLED", 1)
            assert_tree_gone(doc["actors"])
            # the child unregistered too: only the registrar itself is left
            assert {e["name"] for e in await entries(reg_addr)} == {"registrar"}


def test_sigterm_ends_a_registrar_root_and_its_children(
    reg_addr: tractor_reg.TCPAddress, uds_dir: str
) -> None:
    with spawn(root_argv(reg_addr), env={"XDG_RUNTIME_DIR": uds_dir}) as root:
        doc = ready(root)
        assert doc["is_registrar"]
        started = time.monotonic()
        root.signal(signal.SIGTERM)
        assert root.wait(PROMPT) == -signal.SIGTERM, root.stderr_tail()
        elapsed = time.monotonic() - started
        assert root.wait_line("CANCELLED", timeout=1)
    assert elapsed < PROMPT
    assert_tree_gone(doc["actors"])


async def test_a_program_with_its_own_sigterm_handler_keeps_it(
    reg_addr: tractor_reg.TCPAddress, uds_dir: str
) -> None:
    env = {"XDG_RUNTIME_DIR": uds_dir}
    with spawn(registrar_argv(str(reg_addr), extra=["--lease-ttl", str(LEASE)])) as registrar:
        wait_ready(registrar)
        with spawn(root_argv(reg_addr, "own-handler"), env=env) as root:
            with trio.fail_after(60):
                doc = await trio.to_thread.run_sync(ready, root)
                assert doc["handler"] == "own"
                root.signal(signal.SIGTERM)
                await root.await_line("OWN HANDLER", timeout=10)
                # the program's handler ran, and nothing else: the root still serves
                assert doc["uuid"] in uuids(await entries(reg_addr))
                assert root.popen.poll() is None
                root.signal(signal.SIGINT)
                assert await root.await_exit(30) == 0, root.stderr_tail()
                await root.await_line("INTERRUPTED", timeout=5)
            assert_tree_gone(doc["actors"])


async def test_the_root_restores_the_default_sigterm_disposition(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """Inside the root block SIGTERM is the root's; after it, the default again."""
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


async def test_a_root_outside_the_main_thread_leaves_sigterm_alone(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    def in_thread() -> object:
        async def body() -> object:
            async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
                return signal.getsignal(signal.SIGTERM)

        return trio.run(body)

    with trio.fail_after(30):
        seen = await trio.to_thread.run_sync(in_thread)
    assert seen is signal.SIG_DFL


async def test_sigterm_makes_a_child_unregister_at_once(reg_addr: tractor_reg.TCPAddress) -> None:
    """A child actor treats SIGTERM as a cancel: its entry goes with it, not with its
    lease, and it ends as killed by SIGTERM (which its parent reports)."""
    with spawn(registrar_argv(str(reg_addr), extra=["--lease-ttl", str(LEASE)])) as registrar:
        wait_ready(registrar)
        uuid = ""
        with trio.fail_after(60), pytest.raises(tractor_reg.ActorCrashed, match="signal 15"):
            async with tractor_reg.open_nursery(registry_addrs=[reg_addr], lease_ttl=LEASE) as an:
                portal = await an.start_actor("worker")
                uuid, pid = portal.channel.aid.uuid, portal.channel.aid.pid
                assert uuid in uuids(await entries(reg_addr))
                os.kill(pid, signal.SIGTERM)
                await trio.sleep_forever()  # until the nursery reports the child's end
        assert uuid not in uuids(await entries(reg_addr))
