"""Process-wide runtime state: the one actor this process runs, and the calling channel."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from ._exceptions import NoRuntime

if TYPE_CHECKING:
    from ._actor import Actor
    from ._ipc import Channel

_current_actor: Actor | None = None

#: The channel whose Call the current task is serving (``None`` for local calls).
current_channel: contextvars.ContextVar[Channel | None] = contextvars.ContextVar(
    "tractor_reg_current_channel", default=None
)


def current_actor(err_on_no_runtime: bool = True) -> Actor:
    """The actor running in this process.

    Raises :class:`NoRuntime` when no actor runs here (outside ``open_root_actor`` /
    ``open_nursery``, or in a plain child process).
    """
    if _current_actor is None and err_on_no_runtime:
        raise NoRuntime("no tractor_reg actor is running in this process")
    return _current_actor  # type: ignore[return-value]


def maybe_current_actor() -> Actor | None:
    return _current_actor


def _set_current_actor(actor: Actor | None) -> None:
    global _current_actor
    _current_actor = actor
