"""Functions child actors run in the logging and cluster compatibility tests."""

from __future__ import annotations

import os

import tractor_reg as tractor

log = tractor.log.get_logger("logtrio")


async def emit(marker: str) -> str:
    """Log ``marker`` once at each of several levels; return the effective level's name."""
    log.transport(f"{marker} at transport")
    log.debug(f"{marker} at debug")
    log.runtime(f"{marker} at runtime")
    log.info(f"{marker} at info")
    log.cancel(f"{marker} at cancel")
    log.warning(f"{marker} at warning")
    return log.level


async def identity() -> list[object]:
    actor = tractor.current_actor()
    return [actor.name, os.getpid()]


async def emit_at(level: str, marker: str) -> str:
    """Log ``marker`` at the named level (any level the actor knows); return the
    effective level's name."""
    log.log(tractor.log.LEVELS[level], f"{marker} at {level}")
    return log.level
