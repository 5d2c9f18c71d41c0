"""Functions child actors run in tests (an importable, enabled module)."""

from __future__ import annotations

import os
import signal

import trio

import tractor_reg


async def echo(value: object) -> object:
    return value


def add(a: int, b: int) -> int:
    return a + b


async def boom(message: str) -> None:
    raise ValueError(message)


async def whoami() -> list[str]:
    actor = tractor_reg.current_actor()
    return [actor.name, actor.uuid]


async def pid() -> int:
    return os.getpid()


async def sleep_forever() -> None:
    await trio.sleep_forever()


def crash_hard() -> None:
    """Die with SIGKILL from the inside, as a segfault or OOM kill would."""
    os.kill(os.getpid(), signal.SIGKILL)


async def accept_addrs() -> list[list[object]]:
    return [list(a) for a in tractor_reg.current_actor().accept_addrs]


async def find_and_call(name: str, value: object) -> object:
    async with tractor_reg.find_actor(name, enable_transports=None) as portal:
        if portal is None:
            return None
        return await portal.run(echo, value=value)


async def spawn_grandchild(name: str) -> list[int]:
    async with tractor_reg.open_nursery() as an:
        portal = await an.start_actor(name, enable_modules=[__name__])
        return [await portal.run(pid)]
