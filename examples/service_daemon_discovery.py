"""A long-lived service actor, found by name instead of by address.

The root actor of this program starts a daemon actor called ``quote_svc`` and then
reaches it three ways, none of which needs to know where ``quote_svc`` listens:

* ``wait_for_actor`` from a task that starts *before* the service exists and blocks
  until the service has registered;
* ``find_actor`` from the root itself;
* ``find_actor`` from a second, short-lived actor (another process), which has to ask
  the registrar because it has never talked to ``quote_svc`` before.

The program is written against the tractor discovery API; only the import line is
specific to this package.

Run it::

    python examples/service_daemon_discovery.py                      # registry 127.0.0.1:1616
    python examples/service_daemon_discovery.py tcp://127.0.0.1:4455  # another address
    TRACTOR_REG_REGISTRY_ADDRS=tcp://127.0.0.1:4455 python examples/service_daemon_discovery.py

If no registrar answers at the registry address, this program's root actor becomes the
registrar; if one does (say ``python examples/multi_program/registrar.py``), it joins it.
"""

from __future__ import annotations

import sys

import trio

import tractor_reg as tractor

SERVICE = "quote_svc"

# A toy price table. It lives in every process that imports this module, but only the
# ``quote_svc`` actor is asked for it.
_PRICES = {"ACME": 101.25, "INITECH": 12.5, "GLOBEX": 88.0}


# -- runs inside the quote_svc actor (module-level, so a peer can name it) -----------------


async def get_quote(sym: str) -> dict[str, object]:
    """Answer a quote request; ``served_by`` shows which actor answered."""
    price = _PRICES.get(sym.upper())
    if price is None:
        raise KeyError(f"no such symbol: {sym!r}")
    me = tractor.current_actor()
    return {"sym": sym.upper(), "price": price, "served_by": me.name}


# -- runs inside a separate client actor -----------------------------------------------


async def quote_from_elsewhere(sym: str) -> dict[str, object]:
    """Look the service up from a process that has no connection to it yet."""
    async with tractor.find_actor(SERVICE, raise_on_none=True) as portal:
        quote: dict[str, object] = await portal.run(get_quote, sym=sym)
        return quote


# -- the root -------------------------------------------------------------------------------


async def wait_then_ask(sym: str, into: dict[str, object]) -> None:
    """Started before the service: ``wait_for_actor`` blocks until it registered."""
    async with tractor.wait_for_actor(SERVICE) as portal:
        into["waited"] = await portal.run(get_quote, sym=sym)


async def main(registry: str | None = None) -> None:
    # registry_addrs=None means: $TRACTOR_REG_REGISTRY_ADDRS, else 127.0.0.1:1616.
    registry_addrs = [tractor.parse_address(registry)] if registry else None

    async with tractor.open_nursery(registry_addrs=registry_addrs) as an:
        root = tractor.current_actor()
        role = "the registrar" if root.is_registrar else "joined a registrar"
        print(f"root {root.name!r} is {role} at {[str(a) for a in root.reg_addrs]}")

        results: dict[str, object] = {}
        async with trio.open_nursery() as tasks:
            tasks.start_soon(wait_then_ask, "ACME", results)
            # A daemon actor: it runs until cancelled, serving this module's functions.
            svc = await an.start_actor(SERVICE, enable_modules=[__name__])
        print(f"wait_for_actor -> {results['waited']}")

        # Look it up by name. The root is already connected to its child, so this is
        # answered from the connected peers without an RPC to the registrar.
        async with tractor.find_actor(SERVICE) as portal:
            assert portal is not None, "quote_svc is registered, find_actor must see it"
            quote = await portal.run(get_quote, sym="initech")
            print(f"find_actor -> {quote}")

        # The address alone, without connecting.
        async with tractor.query_actor(SERVICE) as (addr, _reg_portal):
            print(f"query_actor -> {addr}")

        # A name nobody registered yields None (raise_on_none=True would raise).
        async with tractor.find_actor("no_such_service") as missing:
            print(f"find_actor('no_such_service') -> {missing}")

        # Another process looks the service up through the registrar.
        client = await an.run_in_actor(quote_from_elsewhere, name="quote_client", sym="GLOBEX")
        print(f"find_actor from another actor -> {await client.result()}")

        # Errors raised in the service come back boxed.
        try:
            await svc.run(get_quote, sym="NOPE")
        except tractor.RemoteActorError as exc:
            print(f"remote error -> {exc.type_name}: {exc.remote_message}")

        # Daemon actors live until told otherwise.
        await svc.cancel_actor()

    print("OK")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else None)
