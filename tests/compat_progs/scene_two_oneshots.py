"""Two one-shot children that find each other by name and call a script function.

Each child stays until the other has called it too: a one-shot child's actor is
cancelled as soon as its function returns (as upstream's), so a child that answered
first must not leave before its peer's call arrives.
"""

from __future__ import annotations

import trio

import tractor_reg as tractor

tractor.log.get_console_log("INFO")

_asked: trio.Event | None = None


def _asked_event() -> trio.Event:
    global _asked
    if _asked is None:
        _asked = trio.Event()
    return _asked


async def introduce() -> str:
    _asked_event().set()
    return f"I am {tractor.current_actor().name}"


async def greet(other: str) -> str:
    async with tractor.wait_for_actor(other) as portal:
        answer: str = await portal.run(introduce)
    await _asked_event().wait()
    return answer


async def main() -> None:
    async with tractor.open_nursery() as an:
        first = await an.run_in_actor(greet, name="first", other="second")
        second = await an.run_in_actor(greet, name="second", other="first")
        print("first heard:", await first.wait_for_result(), flush=True)
        print("second heard:", await second.wait_for_result(), flush=True)


if __name__ == "__main__":
    trio.run(main)
