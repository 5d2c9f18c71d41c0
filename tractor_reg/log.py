"""Upstream ``tractor.log``'s public surface, on the stdlib :mod:`logging` package.

Every logger handed out here lives in the ``tractor_reg`` logger tree unless asked otherwise:
``get_logger('mymod')`` is the stdlib logger ``'tractor_reg.mymod'`` (upstream nests user
loggers as ``'tractor.<name>'`` the same way), and ``get_logger()`` is ``'tractor_reg'``
itself. So the level given to ``open_root_actor(loglevel=...)`` / ``open_nursery(...)`` /
``--log-level`` also governs user loggers, and their records go out through the one stderr
handler the runtime installs. Pass ``pkg_name='mylib'`` for a tree of your own.

Loggers are wrapped in :class:`StackLevelAdapter`, which adds a method per upstream extra
level (``.transport()``, ``.runtime()``, ``.devx()``, ``.cancel()``, ``.pdb()``) and fills
``actor_name``, ``actor_uid`` and ``task`` on every record for formatters that want them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import trio

from . import _state
from ._log import (
    CUSTOM_LEVELS,
    LEVELS,
    LOGGER_NAME,
    LogLevelError,
    has_console,
    install_console,
    level_value,
    validate_loglevel,
)

__all__ = [
    "CUSTOM_LEVELS",
    "LEVELS",
    "LogLevelError",
    "StackLevelAdapter",
    "at_least_level",
    "get_console_log",
    "get_logger",
    "get_loglevel",
    "validate_loglevel",
]

#: upstream's own package name: ``get_logger('tractor.x')`` lands in our tree as
#: ``'tractor_reg.x'``, so code written for upstream keeps one logger tree.
_UPSTREAM_PKG = "tractor"


def at_least_level(log: logging.Logger | logging.LoggerAdapter[Any], level: int | str) -> bool:
    """Whether ``log`` emits records at ``level`` (a number or any accepted level name)."""
    value = level if isinstance(level, int) else level_value(level)
    return log.isEnabledFor(value)


class _ActorContext(Mapping[str, str]):
    """Record fields looked up at each emit: the running actor and the current trio task."""

    _KEYS = ("actor_name", "actor_uid", "task")

    def __len__(self) -> int:
        return len(self._KEYS)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __getitem__(self, key: str) -> str:
        if key == "task":
            try:
                return trio.lowlevel.current_task().name
            except RuntimeError:
                return "no task context"
        if key not in self._KEYS:
            raise KeyError(key)
        actor = _state.maybe_current_actor()
        if actor is None:
            return f"no {key} context"
        return actor.name if key == "actor_name" else actor.uuid[:6]


class StackLevelAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger with one method per upstream extra level.

    Records name the caller of ``.runtime()`` etc. as their source line, as with the
    stdlib's ``.info()``.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, _ActorContext())

    @property
    def level(self) -> str:
        """The effective level's name, lowercase."""
        return logging.getLevelName(self.getEffectiveLevel()).lower()

    def at_least_level(self, level: int | str) -> bool:
        return at_least_level(self, level)

    def transport(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Transport-layer detail: bytes and frames on a channel."""
        self._emit(CUSTOM_LEVELS["TRANSPORT"], msg, args, kwargs)

    def runtime(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Actor runtime lifecycle: boot, registration, spawning, teardown."""
        self._emit(CUSTOM_LEVELS["RUNTIME"], msg, args, kwargs)

    def devx(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Developer-tooling status."""
        self._emit(CUSTOM_LEVELS["DEVX"], msg, args, kwargs)

    def cancel(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Cancellation sequencing."""
        self._emit(CUSTOM_LEVELS["CANCEL"], msg, args, kwargs)

    def pdb(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Debugger status (upstream's debugger is not part of tractor_reg; the level is)."""
        self._emit(CUSTOM_LEVELS["PDB"], msg, args, kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        # The actor/task fields are defaults: a caller's own ``extra=`` keys win.
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs

    def _emit(
        self, level: int, msg: object, args: tuple[object, ...], kwargs: dict[str, Any]
    ) -> None:
        if not self.isEnabledFor(level):
            return
        msg, kw = self.process(msg, kwargs)
        # Skip this frame and the level method's, so the record names their caller.
        kw["stacklevel"] = int(kw.get("stacklevel", 1)) + 2
        self.logger.log(level, msg, *args, **kw)


def _sub_name(name: str, pkg_name: str) -> str | None:
    """``name`` relative to ``pkg_name`` (``None`` for the package logger itself)."""
    prefixes = [pkg_name]
    if pkg_name == LOGGER_NAME:
        prefixes.append(_UPSTREAM_PKG)
    for prefix in prefixes:
        if name == prefix:
            return None
        if name.startswith(prefix + "."):
            return name[len(prefix) + 1 :]
    return name


def get_logger(
    name: str | None = None,
    pkg_name: str = LOGGER_NAME,
    _root_name: str | None = None,
    logger: logging.Logger | None = None,
    mk_sublog: bool = True,
) -> StackLevelAdapter:
    """The package logger, or its sub-logger ``name``, wrapped in a :class:`StackLevelAdapter`.

    ``name`` is taken relative to ``pkg_name`` (default ``'tractor_reg'``); a leading
    ``'tractor_reg.'`` or upstream's ``'tractor.'`` is dropped rather than doubled.
    ``logger`` wraps a stdlib logger of your own as the root instead. ``mk_sublog=False``
    returns the root itself. ``_root_name`` is upstream's deprecated spelling of ``pkg_name``.
    """
    if _root_name is not None:
        warnings.warn(
            "get_logger(_root_name=...) is deprecated; use pkg_name=...",
            DeprecationWarning,
            stacklevel=2,
        )
        pkg_name = _root_name
    root = logger if logger is not None else logging.getLogger(pkg_name)
    sub = _sub_name(name, pkg_name) if name is not None and mk_sublog else None
    return StackLevelAdapter(root.getChild(sub) if sub else root)


def _in_package_tree(logger: logging.Logger) -> bool:
    return logger.name == LOGGER_NAME or logger.name.startswith(LOGGER_NAME + ".")


def get_console_log(
    level: str | int | None = None,
    logger: logging.Logger | StackLevelAdapter | None = None,
    **kwargs: Any,
) -> StackLevelAdapter:
    """A logger (as :func:`get_logger` builds from ``kwargs``) that prints to stderr.

    With a ``level`` (any accepted name, any case, or a number) the logger is set to it and
    gets a stderr handler unless one is already there; for loggers in the ``tractor_reg``
    tree that handler sits on the package logger (the same one ``loglevel=`` installs), so
    each record is printed once. Without a level nothing is configured.
    """
    log = logger if isinstance(logger, StackLevelAdapter) else get_logger(logger=logger, **kwargs)
    if level is None or level == "":
        return log
    target = log.logger
    target.setLevel(level if isinstance(level, int) else level_value(level))
    if _in_package_tree(target):
        package = logging.getLogger(LOGGER_NAME)
        if not has_console(package):
            install_console(package)
        package.propagate = False
    elif not has_console(target):
        install_console(target)
    return log


def get_loglevel() -> str:
    """The package logger's effective level name, lowercase (``'warning'`` if never set)."""
    return logging.getLevelName(logging.getLogger(LOGGER_NAME).getEffectiveLevel()).lower()
