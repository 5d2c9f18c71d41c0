"""Functions for the channel-wedge tests: large calls over one channel in both directions
while each side also answers inline pings, and a large call cancelled mid-send."""

from __future__ import annotations

import trio

import tractor_reg


def size_of(data: bytes) -> int:
    return len(data)


async def hammer(portal: tractor_reg.Portal, size: int, rounds: int) -> int:
    """``rounds`` large calls to the other end of ``portal`` while pinging it all along."""
    data = b"x" * size
    done = 0
    async with trio.open_nursery() as nursery:

        async def pinger() -> None:
            while True:
                await portal.run_from_ns("self", "ping")

        nursery.start_soon(pinger)
        nursery.start_soon(pinger)
        for _ in range(rounds):
            assert await portal.run(size_of, data=data) == size
            done += 1
        nursery.cancel_scope.cancel()
    return done


async def flood(portal: tractor_reg.Portal, pings: int) -> int:
    """``pings`` concurrent inline calls to the other end of ``portal``."""
    answered = 0

    async def ping() -> None:
        nonlocal answered
        await portal.run_from_ns("self", "ping")
        answered += 1

    async with trio.open_nursery() as nursery:
        for _ in range(pings):
            nursery.start_soon(ping)
    return answered


async def flood_parent(pings: int) -> int:
    """Run in a child: :func:`flood` its parent over the channel the parent calls on."""
    return await flood(tractor_reg.current_actor().get_parent(), pings)


async def hammer_parent(size: int, rounds: int) -> int:
    """Run in a child: :func:`hammer` its parent over the channel the parent calls on."""
    return await hammer(tractor_reg.current_actor().get_parent(), size, rounds)
