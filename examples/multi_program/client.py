"""Finds ``quote_svc`` by name through the registrar and calls it.

    python examples/multi_program/client.py [tcp://127.0.0.1:1616]

The client knows only the registrar's address. It joins the registrar as a short-lived
root actor, asks for ``quote_svc``, calls it through the returned portal and leaves.
"""

from __future__ import annotations

import sys

import trio
from quotes import SERVICE, get_quote, registry_from

import tractor_reg as tractor


async def main(argv: list[str]) -> None:
    addr = registry_from(argv)
    async with tractor.open_root_actor(name="quote_client", registry_addrs=[addr]) as me:
        if me.is_registrar:
            raise SystemExit(f"no registrar is running at {addr}; start registrar.py first")

        # Bounded wait: the service may still be starting.
        async with tractor.wait_for_actor(SERVICE, timeout=10) as portal:
            print(f"wait_for_actor -> {portal.channel.aid.name}")

        async with tractor.find_actor(SERVICE, raise_on_none=True) as portal:
            for sym in ("ACME", "GLOBEX"):
                quote = await portal.run(get_quote, sym=sym)
                who = f"{quote['served_by']} pid {quote['pid']}"
                print(f"{sym}: {quote['price']} (served by {who})")

        async with tractor.get_registry() as reg:
            table = await reg.run_from_ns("self", "get_registry")
            print(f"registry: {sorted(key.split('.')[0] for key in table)}")
    print("OK")


if __name__ == "__main__":
    trio.run(main, sys.argv)
