"""A channel never wedges: the reader of a channel never waits on a send, and a frame
that started going out is always finished (or the channel is closed, loudly).

Real actor processes over real sockets; each scenario is repeated because the faults
they guard against are races.
"""

from __future__ import annotations

import pytest
import trio

import tractor_reg
from tests.rpc_targets import wedge

WEDGE = "tests.rpc_targets.wedge"
MB3 = 3 * 1024 * 1024


async def test_large_calls_both_ways_with_inline_pings_never_hang(uds_dir: str) -> None:
    """Parent and child call each other with 3 MB arguments over the same channel, each
    also pinging the other (an inline endpoint) all along: every call ends. Over Unix
    sockets, whose kernel buffers are far smaller than a frame (loopback TCP's grow to
    hold it, which hides the fault)."""
    rounds = 20
    async with tractor_reg.open_nursery(
        name="parent",
        registry_addrs=[tractor_reg.UDSAddress(uds_dir, "reg.sock")],
        enable_modules=[WEDGE],
        enable_transports=["uds"],
    ) as an:
        child = await an.start_actor("child", enable_modules=[WEDGE])
        with trio.fail_after(30):
            async with trio.open_nursery() as both:
                results: list[int] = []

                async def from_child() -> None:
                    results.append(await child.run(wedge.hammer_parent, size=MB3, rounds=rounds))

                both.start_soon(from_child)
                results.append(await wedge.hammer(child, MB3, rounds))
            assert results == [rounds, rounds]
        await child.cancel_actor()


async def test_both_ends_flooding_each_other_with_calls_never_hang(uds_dir: str) -> None:
    """Parent and child each send 20,000 concurrent calls over one channel: the answers
    each reader posts pile up faster than the other end reads them. Calls in flight are
    bounded per channel on the calling side, below what a reader holds back, so neither
    reader ever stops reading and every call is answered."""
    pings = 20_000
    async with tractor_reg.open_nursery(
        name="parent",
        registry_addrs=[tractor_reg.UDSAddress(uds_dir, "reg.sock")],
        enable_modules=[WEDGE],
        enable_transports=["uds"],
    ) as an:
        child = await an.start_actor("child", enable_modules=[WEDGE])
        with trio.fail_after(50):
            async with trio.open_nursery() as both:
                results: list[int] = []

                async def from_child() -> None:
                    results.append(await child.run(wedge.flood_parent, pings=pings))

                both.start_soon(from_child)
                results.append(await wedge.flood(child, pings))
            assert results == [pings, pings]
        await child.cancel_actor()


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
