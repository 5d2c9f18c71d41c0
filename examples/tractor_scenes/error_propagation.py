"""A failing one-shot child among daemons: the error reaches the root boxed, and every
daemon is cancelled."""

from __future__ import annotations

import os

import trio

import tractor_reg as tractor

daemon_pids: list[int] = []


async def own_pid() -> int:
    return os.getpid()


async def fail() -> None:
    raise AssertionError("deliberate")


async def main() -> None:
    async with tractor.open_nursery() as an:
        for i in range(3):
            portal = await an.start_actor(f"daemon_{i}", enable_modules=[__name__])
            daemon_pids.append(await portal.run(own_pid))
        await an.run_in_actor(fail)


if __name__ == "__main__":
    try:
        trio.run(main)
    except tractor.RemoteActorError as err:
        print("boxed:", err.boxed_type.__name__ if err.boxed_type else None, flush=True)
        print("src:", err.src_uid[0] if err.src_uid else None, flush=True)
    print("daemons:", " ".join(map(str, daemon_pids)), flush=True)
