"""Upstream's ``tractor.to_asyncio``: asyncio-infected actors are a non-goal of tractor_reg.

Every function here raises :class:`~tractor_reg.NonGoalError`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ._nongoals import refuse


def open_channel_from(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.to_asyncio.open_channel_from()", "asyncio infection")


async def run_task(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.to_asyncio.run_task()", "asyncio infection")


def run_as_asyncio_guest(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.to_asyncio.run_as_asyncio_guest()", "asyncio infection")
