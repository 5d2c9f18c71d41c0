"""Two one-shot children that find each other by name and call a script function.

A one-shot child stays up after its function returned until the nursery's block ends, so
the child that got its answer first is still there when the other one calls it.
"""

from __future__ import annotations

import trio

import tractor_reg as tractor

tractor.log.get_console_log("INFO")


async def introduce() -> str:
    return f"I am {tractor.current_actor().name}"


async def greet(other: str) -> str:
    async with tractor.wait_for_actor(other) as portal:
        answer: str = await portal.run(introduce)
        return answer


async def main() -> None:
    async with tractor.open_nursery() as an:
        first = await an.run_in_actor(greet, name="first", other="second")
        second = await an.run_in_actor(greet, name="second", other="first")
        print("first heard:", await first.wait_for_result(), flush=True)
        print("second heard:", await second.wait_for_result(), flush=True)


if __name__ == "__main__":
    trio.run(main)
