"""Process-wide runtime state: the one actor this process runs, and the calling channel."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, Literal, overload

import msgspec

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


def is_root_process() -> bool:
    """True unless this process is a child actor spawned by an ``ActorNursery``.

    Unlike upstream (where it reads a runtime variable) this is also true in a program's
    process before its root actor starts: that process is where the root will run.
    """
    return not _child_process


def debug_mode() -> bool:
    """Always ``False``: the multi-actor debugger is a non-goal of tractor_reg."""
    return False


#: The runtime variables upstream tractor exposes, with their fresh-process values.
_RUNTIME_VARS_DEFAULTS: dict[str, Any] = {
    "_is_root": False,
    "_root_mailbox": (None, None),
    "_root_addrs": [],
    "_enable_tpts": ["tcp"],
    "_registry_addrs": [],
    "_debug_mode": False,
    "repl_fixture": False,
    "use_greenback": False,
    "use_stackscope": False,
    "_is_infected_aio": False,
}
_runtime_vars: dict[str, Any] = dict(_RUNTIME_VARS_DEFAULTS)
_child_process = False


class RuntimeVars(msgspec.Struct):
    """This process's runtime variables as a struct (``get_runtime_vars(as_dict=False)``)."""

    _is_root: bool = False
    _root_mailbox: tuple[str | None, int | str | None] = (None, None)
    _root_addrs: list[tuple[str, int | str]] = []
    _enable_tpts: list[str] = msgspec.field(default_factory=lambda: ["tcp"])
    _registry_addrs: list[tuple[str, int | str]] = []
    _debug_mode: bool = False
    repl_fixture: bool = False
    use_greenback: bool = False
    use_stackscope: bool = False
    _is_infected_aio: bool = False


@overload
def get_runtime_vars(
    as_dict: Literal[True] = True, clear_values: bool = False
) -> dict[str, Any]: ...


@overload
def get_runtime_vars(as_dict: Literal[False], clear_values: bool = False) -> RuntimeVars: ...


def get_runtime_vars(
    as_dict: bool = True, clear_values: bool = False
) -> dict[str, Any] | RuntimeVars:
    """A copy of this process's runtime variables (upstream's names and shapes).

    ``_is_root``, ``_root_mailbox`` (the root actor's first address), ``_root_addrs``,
    ``_registry_addrs``, ``_enable_tpts`` and the debugger / asyncio flags (always off).
    Addresses are plain tuples. ``clear_values=True`` gives the fresh-process defaults;
    ``as_dict=False`` a :class:`RuntimeVars`.
    """
    source = _RUNTIME_VARS_DEFAULTS if clear_values else _runtime_vars
    snapshot = {
        key: list(value) if isinstance(value, list) else value for key, value in source.items()
    }
    if as_dict:
        return snapshot
    return msgspec.convert(snapshot, RuntimeVars)


def _set_runtime_vars(
    *,
    is_root: bool,
    root_addrs: list[tuple[str, int | str]],
    registry_addrs: list[tuple[str, int | str]],
    transports: list[str],
) -> None:
    _runtime_vars.update(
        _is_root=is_root,
        _root_mailbox=root_addrs[0] if root_addrs else (None, None),
        _root_addrs=list(root_addrs),
        _registry_addrs=list(registry_addrs),
        _enable_tpts=list(transports),
    )


def _reset_runtime_vars() -> None:
    _runtime_vars.clear()
    _runtime_vars.update(_RUNTIME_VARS_DEFAULTS)


def _mark_child_process() -> None:
    global _child_process
    _child_process = True


def maybe_current_actor() -> Actor | None:
    return _current_actor


def _set_current_actor(actor: Actor | None) -> None:
    global _current_actor
    _current_actor = actor
