"""``open_actor_cluster``: a flat group of identical daemon actors, as upstream has it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from multiprocessing import cpu_count
from typing import Any

import trio

from ._options import module_list
from ._portal import Portal
from ._spawn import open_nursery
from ._state import current_actor


@asynccontextmanager
async def open_actor_cluster(
    modules: Sequence[str],
    count: int | None = None,
    names: Sequence[str] | None = None,
    hard_kill: bool = False,
    **runtime_kwargs: Any,
) -> AsyncIterator[dict[str, Portal]]:
    """Start ``count`` daemon actors serving ``modules``; yield their portals by name.

    Actors are named ``'<this actor's name>.<name>'`` for each of ``names`` (default
    ``worker_0`` … ``worker_<count-1>``) and started concurrently. ``count`` defaults to
    ``len(names)`` when names are given, else to the number of CPUs. ``runtime_kwargs`` go
    to :func:`open_nursery`, which opens the root actor when none runs in this process.
    Leaving the block cancels every actor of the cluster (``hard_kill``: kill at once
    instead of asking them to stop); an exception in the block tears them down as any
    actor nursery does.
    """
    modules = module_list(modules, what="modules")
    if count is None:
        count = len(names) if names else cpu_count()
    if count < 1:
        raise ValueError(f"an actor cluster needs count >= 1, got {count}")
    worker_names = list(names) if names else [f"worker_{i}" for i in range(count)]
    if len(worker_names) != count:
        raise ValueError(f"got {len(worker_names)} names for a cluster of count={count}")
    if len(set(worker_names)) != count:
        raise ValueError(f"cluster actor names must be distinct, got {worker_names}")

    portals: dict[str, Portal] = {}
    async with open_nursery(**runtime_kwargs) as an:
        prefix = current_actor().name

        async def start(name: str) -> None:
            full = f"{prefix}.{name}"
            portals[full] = await an.start_actor(full, enable_modules=list(modules))

        async with trio.open_nursery() as starting:
            for name in worker_names:
                starting.start_soon(start, name)
        yield portals
        await an.cancel(hard_kill=hard_kill)
