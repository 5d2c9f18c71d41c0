"""Functions child actors run in the upstream-compatibility tests (an enabled module)."""

from __future__ import annotations

import os
import time
from typing import Any

import trio

import tractor_reg as tractor


async def runtime_facts() -> dict[str, Any]:
    """What upstream code reads about its own process and actor."""
    actor = tractor.current_actor()
    rtv = tractor.get_runtime_vars()
    return {
        "is_root_process": tractor.is_root_process(),
        "name": actor.name,
        "loglevel": actor.loglevel,
        "accept_addr": list(actor.accept_addr),
        "registry_addrs": [list(a) for a in actor.registry_addrs],
        "rtv_is_root": rtv["_is_root"],
        "rtv_root_mailbox": list(rtv["_root_mailbox"]),
        "rtv_registry_addrs": [list(a) for a in rtv["_registry_addrs"]],
        "parent_name": actor.get_parent().chan.aid.name,
        "env": os.environ.get("TR_COMPAT_MARK"),
        "cwd": os.getcwd(),
    }


async def hello() -> str:
    return f"hello from {tractor.current_actor().name}"


async def find_and_call(name: str) -> str:
    """Look ``name`` up from inside a child and call it (upstream's daemon pattern)."""
    async with tractor.find_actor(name) as portal:
        assert portal is not None, f"find_actor({name!r}) found nothing"
        answer: str = await portal.run(hello)
    async with tractor.wait_for_actor(name) as portal:
        again: str = await portal.run(hello)
    assert again == answer
    return answer


async def raddr_of_found(name: str) -> list[object]:
    """Where the channel a lookup of ``name`` hands out here leads."""
    async with tractor.find_actor(name) as portal:
        assert portal is not None and portal.chan.raddr is not None
        return list(portal.chan.raddr)


async def ask_to_find_me(target: str) -> list[object]:
    """Call ``target`` over a lookup connection; it looks this actor up meanwhile."""
    me = tractor.current_actor().name
    async with tractor.find_actor(target) as portal:
        assert portal is not None
        where: list[object] = await portal.run(raddr_of_found, name=me)
        return where


def block_sync(seconds: float, started: str) -> None:
    """Hold the actor's only thread (it cannot answer a graceful cancel meanwhile), after
    creating the file ``started`` so that a test knows the block began."""
    with open(started, "w"):
        pass
    time.sleep(seconds)


async def own_pid() -> int:
    return os.getpid()


async def big(size: int) -> bytes:
    return b"x" * size


async def take(data: bytes) -> int:
    return len(data)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def raise_unprintable() -> None:
    raise _Unprintable()


async def forever() -> None:
    await trio.sleep_forever()


async def spew_stderr(size: int, go: str, done: str) -> None:
    """Once the file ``go`` exists, write ``size`` bytes to stderr (more than a pipe
    holds), then create ``done``."""
    deadline = time.monotonic() + 20
    while not os.path.exists(go) and time.monotonic() < deadline:
        await trio.sleep(0.01)
    line = b"spew " + b"." * 994 + b"\n"
    for _ in range(size // len(line)):
        os.write(2, line)
    with open(done, "w"):
        pass
