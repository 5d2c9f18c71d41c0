"""A separate program that reaches a registry through the address given on its command
line (a multiaddr, a URL, ...) or ``$TRACTOR_REG_REGISTRY_ADDRS``, and finds an actor.

Prints ``BOUND <accept addrs>``, then ``FOUND <name> <uuid>`` (or ``NONE``), then
``TABLE <entries>`` (the registry table size, read through ``get_registry(addr)``), then
exits. Also an enabled module: actors run :func:`whoami` and :func:`find_via`.
"""

from __future__ import annotations

import argparse

import trio

import tractor_reg

MODULE = "tests.compat_progs.addrs_find"


async def whoami() -> list[str]:
    actor = tractor_reg.current_actor()
    return [actor.name, actor.uuid]


async def find_via(name: str, registry: str) -> list[str] | None:
    """Find ``name`` through the registry at ``registry`` (any address form)."""
    async with tractor_reg.find_actor(
        name, registry_addrs=[registry], enable_transports=None
    ) as portal:
        if portal is None:
            return None
        found: list[str] = await portal.run(whoami)
        return found


async def main(args: argparse.Namespace) -> None:
    registry: list[str] | None = args.registry
    async with tractor_reg.open_root_actor(
        name="addrs_finder",
        registry_addrs=registry,
        accept_addrs=args.bind,
        enable_modules=[MODULE],
    ) as actor:
        print("BOUND", " ".join(str(a) for a in actor.accept_addrs), flush=True)
        async with tractor_reg.find_actor(
            args.name, registry_addrs=registry, enable_transports=None
        ) as portal:
            if portal is None:
                print("NONE", flush=True)
            else:
                # By module path: run as a script, this module is ``__main__`` here.
                found = await portal.run_from_ns(MODULE, "whoami")
                print("FOUND", *found, flush=True)
        async with tractor_reg.get_registry(registry[0] if registry else None) as reg:
            table = await reg.run_from_ns("self", "get_registry")
            print("TABLE", len(table), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--registry", action="append", default=None)
    parser.add_argument("--bind", action="append", default=None)
    trio.run(main, parser.parse_args())
