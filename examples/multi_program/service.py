"""Joins a running registrar and hosts the ``quote_svc`` service actor under it.

    python examples/multi_program/service.py [tcp://127.0.0.1:1616]

Prints ``READY`` once ``quote_svc`` is registered, then keeps it running until Ctrl-C or
SIGTERM, when the service actor is cancelled and reaped before this program exits.
"""

from __future__ import annotations

import signal
import sys

import trio
from quotes import SERVICE, registry_from

import tractor_reg as tractor


async def main(argv: list[str]) -> None:
    addr = registry_from(argv)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with tractor.open_nursery(name="service_host", registry_addrs=[addr]) as an:
            if tractor.current_actor().is_registrar:
                # Nobody answered at addr, so we became the registrar ourselves. That
                # works, but it is not what this example is about.
                print(f"note: no registrar was running at {addr}; this program is it")
            # start_actor returns once the child has registered with the registrar.
            await an.start_actor(SERVICE, enable_modules=["quotes"])
            print(f"READY {SERVICE} registered at {addr}", flush=True)
            async for signum in signals:
                print(f"got {signal.Signals(signum).name}, stopping {SERVICE}", flush=True)
                break
            # Leaving the nursery cancels and reaps quote_svc.
    print("service host stopped", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv)
