"""One-shot and daemon children, the registry portal and a nursery cancel."""

from __future__ import annotations

import trio

import tractor_reg as tractor

tractor.log.get_console_log("INFO")


async def in_child() -> str:
    assert not tractor.is_root_process()
    return "answered from a child"


async def main() -> None:
    assert tractor.is_root_process()
    async with tractor.open_nursery() as an:
        oneshot = await an.run_in_actor(in_child, name="oneshot")
        daemon = await an.start_actor("daemon", enable_modules=[__name__])
        print("daemon:", await daemon.run(in_child), flush=True)
        print("daemon again:", await daemon.run(in_child), flush=True)
        async with tractor.get_registry() as registry:
            print("registry is local:", isinstance(registry, tractor.LocalPortal), flush=True)
        async with tractor.wait_for_actor("daemon") as found:
            print("found:", found.chan.aid.name, flush=True)
        await daemon.cancel_actor()
    print("oneshot:", await oneshot.wait_for_result(), flush=True)


if __name__ == "__main__":
    trio.run(main)
