"""Hostile peers of a registrar, as a script (run with ``python -m``).

    flood calls HOST PORT COUNT      one connection sends COUNT wait_for_actor calls and
                                     never reads an answer
    flood frames HOST PORT CONNS     CONNS connections each send almost all of a frame
                                     just under 4 MiB, then hold it
    flood garbage HOST PORT COUNT    COUNT connections, one after another, each sending a
                                     garbage handshake (a connect loop)

Each mode prints one ``DONE ...`` line once it has done what it can (a send that makes
no progress for a second counts as held up by the registrar), then holds its
connections open until killed.
"""

from __future__ import annotations

import sys

import trio

from tests.rpc_targets.hostile import RawPeer, frame
from tractor_reg._msg import Call, encode

STALL = 1.0
NEAR_FRAME = 4 * 1024 * 1024 - 64


async def connect(host: str, port: int) -> RawPeer:
    stream = await trio.open_tcp_stream(host, port)
    return RawPeer(stream)


async def calls(host: str, port: int, count: int) -> None:
    peer = await connect(host, port)
    await peer.handshake("flooder", "flooder-uuid")
    sent = stalled = 0
    while sent < count:
        burst = b"".join(
            frame(encode(Call(cid=c, ns="self", func="wait_for_actor", kwargs={"name": "x"})))
            for c in range(sent + 1, sent + 1001)
        )
        with trio.move_on_after(STALL) as scope:
            await peer.send_raw(burst)
        if scope.cancelled_caught:
            stalled = 1
            break
        sent += 1000
    print(f"DONE sent={sent} stalled={stalled}", flush=True)
    await trio.sleep_forever()


async def frames(host: str, port: int, conns: int) -> None:
    peers = []
    for i in range(conns):
        peer = await connect(host, port)
        await peer.handshake(f"framer{i}", f"framer-{i}")
        peers.append(peer)
    header = NEAR_FRAME.to_bytes(4, "big")
    body = b"\x00" * (NEAR_FRAME - 100)
    complete = 0

    async def push(peer: RawPeer) -> None:
        nonlocal complete
        with trio.move_on_after(STALL * 3):
            await peer.send_raw(header + body)
            complete += 1

    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(push, peer)
    print(f"DONE complete={complete}", flush=True)
    await trio.sleep_forever()


async def garbage(host: str, port: int, count: int) -> None:
    for _ in range(count):
        stream = await trio.open_tcp_stream(host, port)
        try:
            await stream.send_all(frame(b"\xc1\xc1\xc1"))
            with trio.move_on_after(STALL):
                while await stream.receive_some(65536):
                    pass
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()
    print(f"DONE count={count}", flush=True)
    await trio.sleep_forever()


def main() -> None:
    mode, host, port, number = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    target = {"calls": calls, "frames": frames, "garbage": garbage}[mode]
    trio.run(target, host, port, number)


if __name__ == "__main__":
    main()
