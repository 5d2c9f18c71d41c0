"""A plain ``trio.run`` program whose root actor has a child actor: the common shape of a
service that systemd, Kubernetes or ``docker stop`` ends with SIGTERM.

Prints ``READY <json>`` (the root's uuid, the pids, process groups and UDS socket files of
the root and its child, and the SIGTERM handler it saw inside the root block), then waits.
The body prints ``CANCELLED`` when it is cancelled.

Usage: ``python sigterm_root.py <registry address> <lease ttl> [own-handler]``; with
``own-handler`` the program installs its own SIGTERM handler first, which prints
``OWN HANDLER`` for each SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType

import trio

import tractor_reg as tractor
from tests.compat_progs import teardown_tree


def _own_handler(signum: int, frame: FrameType | None) -> None:
    os.write(1, b"OWN HANDLER\n")


async def main(registry: str, ttl: float) -> None:
    async with tractor.open_nursery(
        registry_addrs=[tractor.parse_address(registry)],
        enable_transports=["tcp", "uds"],
        lease_ttl=ttl,
    ) as an:
        child = await an.start_actor("worker", enable_modules=[teardown_tree.__name__])
        handler = signal.getsignal(signal.SIGTERM)
        doc = {
            "uuid": tractor.current_actor().uuid,
            "is_registrar": tractor.current_actor().is_registrar,
            "actors": [
                await teardown_tree.whereabouts(),
                await child.run(teardown_tree.whereabouts),
            ],
            "handler": "own" if handler is _own_handler else repr(handler),
        }
        print("READY", json.dumps(doc), flush=True)
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            print("CANCELLED", flush=True)
            raise


if __name__ == "__main__":
    if sys.argv[3:] == ["own-handler"]:
        signal.signal(signal.SIGTERM, _own_handler)
    try:
        trio.run(main, sys.argv[1], float(sys.argv[2]))
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
