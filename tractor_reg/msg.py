"""Upstream's ``tractor.msg``: typed payload specs for contexts and streams.

They belong to streaming and contexts, a non-goal of tractor_reg: the module imports, and
every public name read from it raises :class:`~tractor_reg.NonGoalError`, except
:class:`Aid`, an actor's identity (``Actor.aid``, ``Channel.aid``), which is in scope.
"""

from __future__ import annotations

from typing import NoReturn

from ._ipc import Aid
from ._nongoals import refuse

__all__ = ["Aid"]


def __getattr__(name: str) -> NoReturn:
    if name.startswith("__"):
        # Introspection (pickle, inspect, pytest) asks for dunders: "absent" is the answer.
        raise AttributeError(name)
    refuse(f"tractor.msg.{name}", "streaming and contexts")
