"""A tree on Unix sockets only: what the channel to a child says about it."""

from __future__ import annotations

import os

import trio

import tractor_reg as tractor


async def where() -> list[object]:
    actor = tractor.current_actor()
    return [actor.name, str(actor.accept_addr), os.getpid()]


async def main() -> None:
    async with tractor.open_nursery(enable_transports=["uds"]) as an:
        portal = await an.start_actor("uds_kid", enable_modules=[__name__])
        raddr = portal.chan.raddr
        assert isinstance(raddr, tractor.UDSAddress)
        _name, addr, pid = await portal.run(where)
        print("proto:", raddr.proto_key, flush=True)
        print("peer pid matches:", raddr.maybe_pid == pid, flush=True)
        print("child addr:", addr, flush=True)
        await portal.cancel_actor()


if __name__ == "__main__":
    trio.run(main)
