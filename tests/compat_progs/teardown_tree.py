"""A three-level tree whose leaf is stuck in a synchronous call: the root starts ``mid``,
``mid`` starts ``leaf`` and calls into it a function that blocks its whole process (so it
cannot answer a graceful cancel). Imported by the teardown tests and by
``teardown_root.py``; enabled in ``mid`` and ``leaf``."""

from __future__ import annotations

import os
import time
from typing import Any

import trio

import tractor_reg

#: In ``mid``: the pids, process groups and UDS socket files of ``mid`` and ``leaf``.
STATE: dict[str, list[Any]] = {}


def block(secs: float, marker: str) -> str:
    """Create ``marker``, then block the actor's process for ``secs`` seconds."""
    with open(marker, "w"):
        pass
    time.sleep(secs)
    return "woke up"


async def whereabouts() -> list[Any]:
    """``[pid, process group, UDS socket paths]`` of the actor that runs this."""
    socks = [
        a.path
        for a in tractor_reg.current_actor().accept_addrs
        if isinstance(a, tractor_reg.UDSAddress)
    ]
    return [os.getpid(), os.getpgid(0), socks]


async def hold_blocked_leaf(secs: float, marker: str) -> str:
    """In ``mid``: start ``leaf`` and call :func:`block` in it (returns when it wakes)."""
    async with tractor_reg.open_nursery() as an:
        leaf = await an.start_actor("leaf", enable_modules=[__name__])
        STATE["actors"] = [await whereabouts(), await leaf.run(whereabouts)]
        return str(await leaf.run(block, secs=secs, marker=marker))


async def cancel_peer(name: str) -> str:
    """Ask the actor called ``name`` (not a child of this one) to cancel; the error type."""
    async with tractor_reg.find_actor(name, raise_on_none=True) as peer:
        try:
            await peer.run_from_ns("self", "cancel")
        except tractor_reg.RemoteActorError as exc:
            return exc.type_name
    return "accepted"


async def tree_state() -> dict[str, list[Any]]:
    return STATE


async def _hold(mid: tractor_reg.Portal, secs: float, marker: str) -> None:
    try:
        await mid.run(hold_blocked_leaf, secs=secs, marker=marker)
    except tractor_reg.TransportClosed:
        pass  # mid went away: how that surfaces is up to the nursery that spawned it


async def start_blocked_tree(
    an: tractor_reg.ActorNursery, tasks: trio.Nursery, secs: float, marker: str
) -> list[list[Any]]:
    """Start the tree under ``an`` (the call into ``mid`` runs in ``tasks``) and return
    ``[[pid, pgid, socks] of mid, [...] of leaf]`` once the leaf is blocked."""
    mid = await an.start_actor("mid", enable_modules=[__name__])
    tasks.start_soon(_hold, mid, secs, marker)
    with trio.fail_after(30):
        while not os.path.exists(marker):
            await trio.sleep(0.02)
        state = await mid.run(tree_state)
    actors: list[list[Any]] = state["actors"]
    return actors
