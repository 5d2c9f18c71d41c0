"""Upstream ``tractor`` names for features this package deliberately leaves out.

Each name exists, so that a tractor program imports and defines its functions as before,
and fails with :class:`NonGoalError` (a ``NotImplementedError``) naming the non-goal at
the point where it would use the feature, never with an ``AttributeError``.

The non-goals: streaming and contexts between actors, the multi-actor debugger, and
``asyncio``-infected actors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NoReturn, TypeVar, overload

from ._exceptions import TractorRegError

NonGoal = Literal["streaming and contexts", "the debugger", "asyncio infection"]

_F = TypeVar("_F", bound=Callable[..., Any])


class NonGoalError(TractorRegError, NotImplementedError):
    """An upstream ``tractor`` feature that ``tractor_reg`` does not implement.

    Attributes:
        feature: what was asked for (e.g. ``"Portal.open_context()"``).
        non_goal: which of the project's non-goals it belongs to.
    """

    def __init__(self, feature: str, non_goal: NonGoal) -> None:
        self.feature = feature
        self.non_goal = non_goal
        super().__init__(
            f"{feature} is not supported by tractor_reg: {non_goal} is one of its non-goals "
            "(see docs/tractor-compat.md)"
        )


def refuse(feature: str, non_goal: NonGoal) -> NoReturn:
    raise NonGoalError(feature, non_goal)


# -- streaming and contexts ------------------------------------------------------------------


@overload
def context(func: _F) -> _F: ...


@overload
def context(func: None = None, **_options: Any) -> Callable[[_F], _F]: ...


def context(func: _F | None = None, **_options: Any) -> _F | Callable[[_F], _F]:
    """Upstream's ``@tractor.context`` decorator: the function is returned unchanged.

    Defining a context function is harmless; opening it (``Portal.open_context``) raises
    :class:`NonGoalError`.
    """
    if func is None:
        return _unchanged
    return func


def _unchanged(func: _F) -> _F:
    return func


def stream(func: _F) -> _F:
    """Upstream's ``@tractor.stream`` decorator: the function is returned unchanged."""
    return func


class Context:
    """Upstream's IPC context type, kept as a name for annotations; it cannot be made."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        refuse("tractor.Context", "streaming and contexts")


class MsgStream:
    """Upstream's inter-actor stream type, kept as a name for annotations."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        refuse("tractor.MsgStream", "streaming and contexts")


def current_ipc_ctx(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.current_ipc_ctx()", "streaming and contexts")


# -- the debugger ------------------------------------------------------------------------------


async def pause(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.pause()", "the debugger")


def pause_from_sync(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.pause_from_sync()", "the debugger")


async def breakpoint(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.breakpoint()", "the debugger")


async def post_mortem(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.post_mortem()", "the debugger")
