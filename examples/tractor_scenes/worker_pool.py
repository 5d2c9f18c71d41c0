"""A pool of daemon workers driven concurrently through their portals."""

from __future__ import annotations

import itertools

import trio

import tractor_reg as tractor

NUMBERS = [97, 100, 7919, 7920, 104729, 1, 2, 65537]


async def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


async def main() -> None:
    results: dict[int, tuple[bool, str]] = {}
    async with tractor.open_nursery() as an:
        workers = [await an.start_actor(f"worker_{i}", enable_modules=[__name__]) for i in range(3)]

        async def submit(n: int, portal: tractor.Portal) -> None:
            results[n] = (await portal.run(is_prime, n=n), portal.chan.aid.name)

        async with trio.open_nursery() as tn:
            for n, portal in zip(NUMBERS, itertools.cycle(workers), strict=False):
                tn.start_soon(submit, n, portal)
        await an.cancel()
    for n in NUMBERS:
        print(n, results[n][0], results[n][1], flush=True)


if __name__ == "__main__":
    trio.run(main)
