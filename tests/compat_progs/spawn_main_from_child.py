"""Functions defined in this script (``__main__``) spawned from child actors: the root
runs ``middle`` in a child, which runs ``inner`` in a grandchild with ``run_in_actor``,
which runs ``leaf`` one level deeper; ``middle`` also starts a daemon that enables the
script. Prints ``RESULT <json>``.

Usage: ``python spawn_main_from_child.py <registry address>``."""

from __future__ import annotations

import json
import sys
from typing import Any

import trio

import tractor_reg as tractor


def leaf(x: int) -> int:
    return x + 1


async def inner(x: int) -> list[Any]:
    async with tractor.open_nursery() as an:
        portal = await an.run_in_actor(leaf, x=x)
        return [__name__, await portal.result()]


async def middle(x: int) -> list[Any]:
    async with tractor.open_nursery() as an:
        deeper = await an.run_in_actor(inner, x=x)
        daemon = await an.start_actor("script_daemon", enable_modules=[__name__])
        return [__name__, await deeper.result(), await daemon.run(leaf, x=x * 10)]


async def main(registry: str) -> None:
    async with tractor.open_nursery(registry_addrs=[tractor.parse_address(registry)]) as an:
        portal = await an.run_in_actor(middle, x=1)
        print("RESULT", json.dumps(await portal.result()), flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
