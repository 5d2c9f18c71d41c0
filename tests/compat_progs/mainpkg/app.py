"""A program run with ``python -m``: its functions run in children, which import it by
name so its relative import works there too."""

from __future__ import annotations

import trio

import tractor_reg as tractor

from .helpers import shout


async def greet() -> str:
    return shout(f"hello from {tractor.current_actor().name}")


async def main() -> None:
    async with tractor.open_nursery() as an:
        portal = await an.run_in_actor(greet, name="greeter")
        print("RESULT", await portal.wait_for_result(), flush=True)
        daemon = await an.start_actor("daemon", enable_modules=[__name__])
        print("DAEMON", await daemon.run(greet), flush=True)


if __name__ == "__main__":
    trio.run(main)
