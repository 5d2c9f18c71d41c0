"""Another program that looks an actor up by name and calls it.

Usage: python -m tests.rpc_targets.probe_prog REGISTRY_ADDR NAME
Prints ``FOUND <answer>`` or ``MISSING``.
"""

from __future__ import annotations

import sys

import trio

import tractor_reg as tractor
from tests.rpc_targets import compat_funcs


async def main(registry: str, name: str) -> None:
    async with tractor.open_root_actor(name="probe", registry_addrs=[registry]):
        async with tractor.find_actor(name) as portal:
            if portal is None:
                print("MISSING", flush=True)
                return
            print("FOUND", await portal.run(compat_funcs.hello), flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
