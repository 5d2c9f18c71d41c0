"""A registration storm: many raw clients register distinct uids at one registrar at once.

Usage: ``python -m tests.rpc_targets.storm tcp://HOST:PORT --count N [--concurrency C]``

Uid ``i`` (for ``i`` in ``range(N)``) is ``("storm", str(i))`` at address
``("127.0.0.1", 20000 + i)``. ``C`` workers (default ``N``: every uid at once) each take
the next uid, open a connection handshaken as that uid, send ``register_actor`` and,
as soon as its ``Return`` arrives, print ``ACK <uuid>`` (flushed), then hang up
(registrations outlive connections: they end by lease). An ``Error`` answer prints
``ERR <uuid> <message>``. When every uid was acknowledged it prints ``DONE <n>``; the
first broken connection (the registrar died) prints ``BROKEN <uuid> <error>`` and ends
the storm with exit code 1.
"""

from __future__ import annotations

import argparse
import sys

import trio

import tractor_reg
from tests.rpc_targets.hostile import raw_peer
from tractor_reg._msg import Return

BASE_PORT = 20000


def storm_addr(i: int) -> list[object]:
    return ["127.0.0.1", BASE_PORT + i]


async def main(args: argparse.Namespace) -> int:
    if args.count + BASE_PORT > 65535:
        raise SystemExit(f"--count must be <= {65535 - BASE_PORT}")
    pending = iter(range(args.count))
    acked = 0
    broken: list[str] = []

    async def worker(cancel_scope: trio.CancelScope) -> None:
        nonlocal acked
        for i in pending:
            uuid = str(i)
            try:
                async with raw_peer(args.registrar) as peer:
                    await peer.handshake("storm", uuid)
                    reply = await peer.call(
                        "self",
                        "register_actor",
                        uid=["storm", uuid],
                        addr=[storm_addr(i)],
                        ttl=args.ttl,
                    )
            except (OSError, tractor_reg.TractorRegError) as exc:
                if not broken:
                    broken.append(f"BROKEN {uuid} {type(exc).__name__}: {exc}")
                cancel_scope.cancel()
                return
            if isinstance(reply, Return):
                acked += 1
                print(f"ACK {uuid}", flush=True)
            else:
                print(f"ERR {uuid} {reply.type_name}: {reply.message}", flush=True)

    async with trio.open_nursery() as nursery:
        for _ in range(min(args.concurrency or args.count, args.count)):
            nursery.start_soon(worker, nursery.cancel_scope)
    if broken:
        print(broken[0], flush=True)
        return 1
    print(f"DONE {acked}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("registrar", type=tractor_reg.parse_address)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--ttl", type=float, default=3600.0)
    sys.exit(trio.run(main, parser.parse_args()))
