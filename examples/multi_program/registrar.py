"""A standalone registrar: a process that does nothing but keep the registry.

Start it first; other programs then join it by passing its address as their registry
address. It refuses to start when another registrar already answers there
(``ensure_registry=True``), and stops cleanly on Ctrl-C or SIGTERM.

    python examples/multi_program/registrar.py [tcp://127.0.0.1:1616]

It prints ``READY <address>`` once it accepts registrations.
"""

from __future__ import annotations

import signal
import sys

import trio
from quotes import registry_from

import tractor_reg as tractor


async def main(argv: list[str]) -> None:
    addr = registry_from(argv)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with tractor.open_root_actor(
            name="registrar", registry_addrs=[addr], ensure_registry=True
        ) as actor:
            assert actor.is_registrar
            print(f"READY {addr}", flush=True)
            async for signum in signals:
                print(f"got {signal.Signals(signum).name}, shutting down", flush=True)
                break
    print("registrar stopped", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv)
