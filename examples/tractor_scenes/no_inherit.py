"""``inherit_parent_main``: a child loads the parent's script only when allowed to."""

from __future__ import annotations

import trio

import tractor_reg as tractor


async def defined_in_script() -> str:
    return f"script function ran in {tractor.current_actor().name}"


async def main() -> None:
    async with tractor.open_nursery() as an:
        inheriting = await an.start_actor("inheriting", enable_modules=[__name__])
        print(await inheriting.run(defined_in_script), flush=True)
        plain = await an.start_actor("plain", enable_modules=[__name__], inherit_parent_main=False)
        try:
            await plain.run(defined_in_script)
        except tractor.RemoteActorError as err:
            print("refused:", err.boxed_type_str, flush=True)


if __name__ == "__main__":
    trio.run(main)
