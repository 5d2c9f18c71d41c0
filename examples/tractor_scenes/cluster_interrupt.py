"""A cluster of sleepy actors torn down by a KeyboardInterrupt raised inside it."""

from __future__ import annotations

import os

import trio

import tractor_reg as tractor

pids: list[int] = []


async def sleepy() -> None:
    await trio.sleep_forever()


async def own_pid() -> int:
    return os.getpid()


async def main() -> None:
    async with (
        tractor.open_actor_cluster(modules=[__name__], count=3) as portals,
        tractor.trionics.collapse_eg(),
        trio.open_nursery() as tn,
    ):
        for portal in portals.values():
            pids.append(await portal.run(own_pid))
            tn.start_soon(portal.run, sleepy)
        print("names:", " ".join(sorted(portals)), flush=True)
        raise KeyboardInterrupt


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    print("pids:", " ".join(map(str, pids)), flush=True)
