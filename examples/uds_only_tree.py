"""An actor tree that talks over Unix domain sockets only (no TCP port is opened).

The root becomes the registrar on ``<dir>/registry.sock``, starts a ``counter`` actor and
then finds it twice: directly from the root, and from a sibling actor that asks the
registrar. Every lookup is restricted to UDS addresses with
``enable_transports=['uds']``.

    python examples/uds_only_tree.py [DIR]

``DIR`` (or ``$TRACTOR_REG_EXAMPLE_DIR``) is where the registry socket goes; by default a
fresh temporary directory, removed at the end. Keep it short: a socket path must fit in
107 bytes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import trio

import tractor_reg as tractor

SERVICE = "counter"

# The counter's state: module-level, so it lives in whichever actor runs the functions.
_count = 0


# -- runs in the counter actor --------------------------------------------------------------


async def bump(by: int = 1) -> int:
    global _count
    _count += by
    return _count


async def transports() -> list[str]:
    """The transports this actor accepts connections on."""
    return sorted({addr.transport for addr in tractor.current_actor().accept_addrs})


# -- runs in a sibling actor -------------------------------------------------------------------


async def bump_from_sibling(by: int) -> int:
    """A sibling has no connection to the counter yet: this lookup goes to the registrar."""
    async with tractor.find_actor(SERVICE, enable_transports=["uds"], raise_on_none=True) as portal:
        count: int = await portal.run(bump, by=by)
        return count


# -- the root --------------------------------------------------------------------------------


async def main(directory: str) -> None:
    registry = (directory, "registry.sock")
    async with tractor.open_nursery(enable_transports=["uds"], registry_addrs=[registry]) as an:
        root = tractor.current_actor()
        print(f"root listens on {[str(a) for a in root.accept_addrs]}")

        await an.start_actor(SERVICE, enable_modules=[__name__])

        async with tractor.query_actor(SERVICE) as (addr, _):
            assert isinstance(addr, tractor.UDSAddress), addr
            print(f"{SERVICE} is at {addr}")

        async with tractor.find_actor(SERVICE, enable_transports=["uds"]) as portal:
            assert portal is not None
            print(f"{SERVICE} accepts on {await portal.run(transports)}")
            print(f"bump from root -> {await portal.run(bump, by=1)}")

        sibling = await an.run_in_actor(bump_from_sibling, name="sibling", by=10)
        print(f"bump from sibling -> {await sibling.result()}")

        async with tractor.find_actor(SERVICE, enable_transports=["uds"]) as portal:
            assert portal is not None
            total = await portal.run(bump, by=0)
            print(f"total -> {total}")
            assert total == 11
            await portal.cancel_actor()


def run(argv: list[str]) -> None:
    given = argv[1] if len(argv) > 1 else os.environ.get("TRACTOR_REG_EXAMPLE_DIR")
    directory = given or tempfile.mkdtemp(prefix="tr-")
    try:
        trio.run(main, directory)
        # The root removes its registry socket file when it exits.
        leftover = os.listdir(directory)
        assert not leftover, f"socket files left behind in {directory}: {leftover}"
        print("OK")
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    run(sys.argv)
