"""A root program over the tree of ``teardown_tree``: prints ``TREE <json>`` once the
leaf is blocked, then waits for Ctrl-C and prints ``INTERRUPTED`` on its way out.

Usage: ``python teardown_root.py <registry address> <reap grace> <marker file>``."""

from __future__ import annotations

import json
import sys

import trio

import tractor_reg as tractor
from tests.compat_progs import teardown_tree


async def main(registry: str, grace: float, marker: str) -> None:
    async with tractor.open_nursery(
        registry_addrs=[tractor.parse_address(registry)], enable_transports=["tcp", "uds"]
    ) as an:
        an.reap_grace = grace
        async with trio.open_nursery() as tasks:
            actors = await teardown_tree.start_blocked_tree(an, tasks, 30.0, marker)
            print("TREE", json.dumps(actors), flush=True)
            await trio.sleep_forever()


if __name__ == "__main__":
    try:
        trio.run(main, sys.argv[1], float(sys.argv[2]), sys.argv[3])
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
