"""A channel never wedges: the reader of a channel never waits on a send, and a frame
that started going out is always finished (or the channel is closed, loudly).

Real actor processes over real sockets; each scenario is repeated because the faults
they guard against are races.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import tractor_reg
from tests.rpc_targets import wedge

WEDGE = "tests.rpc_targets.wedge"
MB3 = 3 * 1024 * 1024


async def both_ways(
    uds_dir: str,
    from_parent: Callable[[tractor_reg.Portal], Awaitable[int]],
    from_child: Callable[..., Awaitable[int]],
    deadline: float,
    **kwargs: Any,
) -> list[int]:
    """A parent and its child over Unix sockets, each running its side of a scenario on
    the one channel between them at the same time; both results."""
    async with tractor_reg.open_nursery(
        name="parent",
        registry_addrs=[tractor_reg.UDSAddress(uds_dir, "reg.sock")],
        enable_modules=[WEDGE],
        enable_transports=["uds"],
    ) as an:
        child = await an.start_actor("child", enable_modules=[WEDGE])
        results: list[int] = []
        with trio.fail_after(deadline):
            async with trio.open_nursery() as both:

                async def child_side() -> None:
                    results.append(await child.run(from_child, **kwargs))

                both.start_soon(child_side)
                results.append(await from_parent(child))
        await child.cancel_actor()
    return results


async def test_large_calls_both_ways_with_inline_pings_never_hang(uds_dir: str) -> None:
    """Parent and child call each other with 3 MB arguments over the same channel, each
    also pinging the other (an inline endpoint) all along: every call ends. Over Unix
    sockets, whose kernel buffers are far smaller than a frame (loopback TCP's grow to
    hold it, which hides the fault)."""
    rounds = 20
    results = await both_ways(
        uds_dir,
        lambda child: wedge.hammer(child, MB3, rounds),
        wedge.hammer_parent,
        30,
        size=MB3,
        rounds=rounds,
    )
    assert results == [rounds, rounds]


async def test_both_ends_flooding_each_other_with_calls_never_hang(uds_dir: str) -> None:
    """Parent and child each send 20,000 concurrent calls over one channel: the answers
    each reader posts pile up faster than the other end reads them. Calls in flight are
    bounded per channel on the calling side, below what a reader holds back, so neither
    reader ever stops reading and every call is answered."""
    pings = 20_000
    results = await both_ways(
        uds_dir, lambda child: wedge.flood(child, pings), wedge.flood_parent, 50, pings=pings
    )
    assert results == [pings, pings]


@pytest.mark.parametrize("delay", [0.0005, 0.002, 0.01])
async def test_a_call_cancelled_mid_send_leaves_the_channel_usable(
    reg_addr: tractor_reg.TCPAddress, delay: float
) -> None:
    """``move_on_after`` around a 3 MB call cancels it while its frame is going out: the
    frame is finished anyway, and every later call on the same channel works."""
    async with tractor_reg.open_nursery(
        name="parent", registry_addrs=[reg_addr], enable_modules=[WEDGE]
    ) as an:
        child = await an.start_actor("child", enable_modules=[WEDGE])
        data = b"y" * MB3
        with trio.fail_after(30):
            for i in range(12):
                with trio.move_on_after(delay * (1 + i % 4)):
                    await child.run(wedge.size_of, data=data)
                assert await child.run(wedge.size_of, data=b"abc") == 3
                assert await child.run_from_ns("self", "ping")
            assert await child.run(wedge.size_of, data=data) == MB3
        await child.cancel_actor()
