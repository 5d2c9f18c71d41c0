"""Upstream ``tractor.log``'s public surface, on the stdlib :mod:`logging` package.

Every logger handed out here lives in the ``tractor_reg`` logger tree unless asked otherwise:
``get_logger('mymod')`` is the stdlib logger ``'tractor_reg.mymod'`` (upstream nests user
loggers as ``'tractor.<name>'`` the same way), and ``get_logger()`` is ``'tractor_reg'``
itself. So the level given to ``open_root_actor(loglevel=...)`` / ``open_nursery(...)`` /
``--log-level`` also governs user loggers, and their records go out through the one stderr
handler the runtime installs. Pass ``pkg_name='mylib'`` for a tree of your own.

Loggers are wrapped in :class:`StackLevelAdapter`, which adds a method per upstream extra
level (``.transport()``, ``.runtime()``, ``.devx()``, ``.io()``, ``.cancel()``, ``.pdb()``,
and one per level added with :func:`add_log_level`) and fills ``actor_name``,
``actor_uid`` and ``task`` on every record for formatters that want them.

:func:`get_console_log` colours its output with the optional ``colorlog`` package when it
is importable (``LOG_FORMAT``, ``DATE_FORMAT``, ``STD_PALETTE``, ``BOLD_PALETTE``), and
prints the runtime's plain format otherwise. :func:`apply_logspec` sets levels per
subsystem from a compact spec such as ``'ipc:debug,spawn:runtime'``.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, TypeAlias

import trio

from . import _state
from ._exceptions import InvalidArgument
from ._log import (
    CUSTOM_LEVELS,
    ENV_LOGLEVEL,
    LEVELS,
    LOGGER_NAME,
    ConsoleHandler,
    LogLevelError,
    add_console,
    console_handler,
    has_console,
    level_value,
    register_level,
    validate_loglevel,
)

__all__ = [
    "BOLD_PALETTE",
    "CUSTOM_LEVELS",
    "DATE_FORMAT",
    "ENV_LOGLEVEL",
    "LEVELS",
    "LOG_FORMAT",
    "STD_PALETTE",
    "LogLevelError",
    "LogSpec",
    "StackLevelAdapter",
    "add_log_level",
    "apply_logspec",
    "at_least_level",
    "get_console_log",
    "get_logger",
    "get_loglevel",
    "parse_logspec",
    "pformat_task_uid",
    "validate_loglevel",
]

#: The console line :func:`get_console_log` prints when ``colorlog`` is importable, in
#: ``str.format`` style with ``colorlog``'s colour fields: time, the emitting actor (name
#: and uid prefix), process id and task, then level, logger, source line and message.
LOG_FORMAT: str = (
    "{log_color}{asctime}{reset} "
    "{thin_white}({actor_name}[{actor_uid}] pid={process} task={task}){reset} "
    "{log_color}[{reset}{bold_log_color}{levelname}{reset}{log_color}]{reset} "
    "{log_color}{name}{reset} {thin_white}{filename}:{lineno}{reset} "
    "{message}"
)

#: ``time.strftime`` format of ``{asctime}`` in :data:`LOG_FORMAT`.
DATE_FORMAT: str = "%b %d %H:%M:%S"

#: ``colorlog`` colour per level name (uppercase); :func:`add_log_level` adds to it.
STD_PALETTE: dict[str, str] = {
    "TRANSPORT": "cyan",
    "DEBUG": "white",
    "RUNTIME": "white",
    "DEVX": "cyan",
    "INFO": "green",
    "IO": "purple",
    "CANCEL": "yellow",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "red",
    "PDB": "white",
}

#: ``colorlog`` secondary palette: ``{bold_log_color}`` is the level's colour in bold.
BOLD_PALETTE: dict[str, dict[str, str]] = {
    "bold": {level: f"bold_{colour}" for level, colour in STD_PALETTE.items()}
}

#: A logging spec: ``True`` (the package logger at ``default_level``, else ``cancel``),
#: ``False`` (nothing), ``'<level>'`` (the package logger), or
#: ``'<sub>:<level>,<sub>:<level>,...'`` (sub-loggers, named relative to the package).
LogSpec: TypeAlias = str | bool

#: upstream's own package name: ``get_logger('tractor.x')`` lands in our tree as
#: ``'tractor_reg.x'``, so code written for upstream keeps one logger tree.
_UPSTREAM_PKG = "tractor"


def at_least_level(log: logging.Logger | logging.LoggerAdapter[Any], level: int | str) -> bool:
    """Whether ``log`` emits records at ``level`` (a number or any accepted level name)."""
    value = level if isinstance(level, int) else level_value(level)
    return log.isEnabledFor(value)


def pformat_task_uid(id_part: str = "tail") -> str:
    """The current trio task as ``'name[NNNNNN]'``: its name and six digits of its ``id()``.

    ``id_part='tail'`` takes the last six digits (they differ most between tasks),
    ``'head'`` the first six. Outside a trio task: ``RuntimeError``, as trio's
    ``current_task()``.
    """
    if id_part not in ("tail", "head"):
        raise InvalidArgument(f"id_part must be 'tail' or 'head', got {id_part!r}")
    task = trio.lowlevel.current_task()
    digits = str(id(task))
    return f"{task.name}[{digits[-6:] if id_part == 'tail' else digits[:6]}]"


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
                return pformat_task_uid()
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

    def io(self, msg: object, *args: object, **kwargs: Any) -> None:
        """A child process's relayed output (``trionics.supervise_run_process``)."""
        self._emit(CUSTOM_LEVELS["IO"], msg, args, kwargs)

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


class _ActorFields(logging.Filter):
    """Fills ``actor_name``, ``actor_uid`` and ``task`` on records from plain stdlib
    loggers (the runtime's own), so :data:`LOG_FORMAT` formats every record."""

    _context = _ActorContext()

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        for key in self._context:
            if key not in fields:
                fields[key] = self._context[key]
        return True


def _colour_console() -> ConsoleHandler | None:
    """A stderr handler formatting with ``colorlog``, or ``None`` without the package.

    ``colorlog`` leaves the colour codes out when stderr is not a terminal, or
    ``$NO_COLOR`` is set; ``$FORCE_COLOR`` forces them.
    """
    try:
        colorlog = importlib.import_module("colorlog")
    except ImportError:
        return None
    handler = ConsoleHandler("console")
    handler.setFormatter(
        colorlog.ColoredFormatter(
            fmt=LOG_FORMAT,
            datefmt=DATE_FORMAT,
            style="{",
            log_colors=STD_PALETTE,
            secondary_log_colors=BOLD_PALETTE,
            stream=handler.stream,
        )
    )
    handler.addFilter(_ActorFields())
    return handler


def _console() -> ConsoleHandler:
    return _colour_console() or console_handler("text")


def add_log_level(name: str, value: int, color: str = "white") -> None:
    """Add log level ``name`` (any case) at number ``value``, everywhere at once.

    The level joins :data:`CUSTOM_LEVELS` and :data:`LEVELS` (so every ``loglevel=`` and
    ``--log-level`` accepts it, and child actors started afterwards know it), gets its
    ``logging`` name, its ``color`` in the palettes, and a ``StackLevelAdapter`` method
    of its lowercase name: ``add_log_level('audit', 25)`` gives ``log.audit(...)``.
    Calling it again for the same name moves the level to the new value and colour.

    :class:`LogLevelError` for a stdlib level name, a value another level has, a name
    that is not an identifier or would shadow a logger method, or a value outside 1..1000.
    """
    if isinstance(name, str):
        lower = name.lower()
        # (a stdlib level name gets register_level()'s more precise refusal)
        shadows = lower not in _LEVEL_METHODS and any(
            lower in vars(cls) for cls in StackLevelAdapter.__mro__
        )
        if shadows and name.upper() not in logging.getLevelNamesMapping():
            raise LogLevelError(
                f"log level {name!r} would shadow StackLevelAdapter.{lower}; pick another name"
            )
    if not isinstance(color, str) or not color:
        raise LogLevelError(f"color must be a colorlog colour name, got {color!r}")
    upper = register_level(name, value)
    STD_PALETTE[upper] = color
    BOLD_PALETTE["bold"][upper] = f"bold_{color}"
    method = upper.lower()
    if method not in _LEVEL_METHODS:
        setattr(StackLevelAdapter, method, _level_method(upper))
        _LEVEL_METHODS.add(method)


def _level_method(upper: str) -> Callable[..., None]:
    def emit(self: StackLevelAdapter, msg: object, *args: object, **kwargs: Any) -> None:
        # The value is looked up per call: re-registering the level moves this method too.
        self._emit(CUSTOM_LEVELS[upper], msg, args, kwargs)

    emit.__name__ = upper.lower()
    emit.__qualname__ = f"StackLevelAdapter.{upper.lower()}"
    emit.__doc__ = f"Log at the {upper} level added with add_log_level()."
    return emit


#: StackLevelAdapter's per-level methods (a level of the same name may be re-registered).
_LEVEL_METHODS: set[str] = {name.lower() for name in CUSTOM_LEVELS}


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
    subsys_spec: str | None = None,
    mk_sublog: bool = True,
    _strict_debug: bool = False,
) -> StackLevelAdapter:
    """The package logger, or its sub-logger ``name``, wrapped in a :class:`StackLevelAdapter`.

    ``name`` is taken relative to ``pkg_name`` (default ``'tractor_reg'``); a leading
    ``'tractor_reg.'`` or upstream's ``'tractor.'`` is dropped rather than doubled
    (``_strict_debug=True`` warns when that happens, so the call can be fixed).
    ``logger`` wraps a stdlib logger of your own as the root instead. ``mk_sublog=False``
    returns the root itself. ``_root_name`` is upstream's deprecated spelling of
    ``pkg_name``. ``subsys_spec`` is reserved upstream and has no effect there or here;
    per-subsystem levels are :func:`apply_logspec`'s job.
    """
    if subsys_spec is not None and not isinstance(subsys_spec, str):
        raise TypeError(f"subsys_spec must be a str or None, got {subsys_spec!r}")
    if _root_name is not None:
        warnings.warn(
            "get_logger(_root_name=...) is deprecated; use pkg_name=...",
            DeprecationWarning,
            stacklevel=2,
        )
        pkg_name = _root_name
    root = logger if logger is not None else logging.getLogger(pkg_name)
    sub = _sub_name(name, pkg_name) if name is not None and mk_sublog else None
    if _strict_debug and name is not None and mk_sublog and sub != name:
        warnings.warn(
            f"get_logger(name={name!r}) repeats the package name; "
            f"pass name={sub!r} with pkg_name={pkg_name!r}",
            UserWarning,
            stacklevel=2,
        )
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
    tree that handler sits on the package logger (the same one ``loglevel=`` uses), so
    each record is printed once. Without a level nothing is configured. The handler
    formats with ``colorlog`` and :data:`LOG_FORMAT` when ``colorlog`` is importable, else
    with the runtime's plain format.
    """
    log = logger if isinstance(logger, StackLevelAdapter) else get_logger(logger=logger, **kwargs)
    if level is None or level == "":
        return log
    target = log.logger
    target.setLevel(level if isinstance(level, int) else level_value(level))
    _ensure_console(target)
    return log


def _ensure_console(target: logging.Logger) -> None:
    if _in_package_tree(target):
        package = logging.getLogger(LOGGER_NAME)
        if not has_console(package):
            add_console(package, _console())
        package.propagate = False
    elif not has_console(target):
        add_console(target, _console())


def parse_logspec(
    logspec: LogSpec,
    default_level: str | None = None,
    pkg_name: str = LOGGER_NAME,
) -> dict[str | None, str]:
    """A :data:`LogSpec` as ``{sub-logger name or None: level}``; ``None`` is the package.

    ``True`` gives ``{None: default_level or 'cancel'}``, ``False`` (or ``''``) gives
    ``{}``, ``'info'`` gives ``{None: 'info'}``, and ``'ipc:debug,spawn:runtime'`` gives
    one entry per comma-separated part. Levels come back lowercased.
    :class:`LogLevelError` for an unknown level; ``InvalidArgument`` (a ``ValueError``)
    for a malformed spec: a part without ``':'`` among several, an empty sub-logger
    name, or one that contains the package name (names are relative to it).
    """
    if logspec is False:
        return {}
    if logspec is True:
        return {None: _spec_level(default_level or "cancel", "default_level")}
    if not isinstance(logspec, str):
        raise InvalidArgument(
            f"a logging spec is a bool or a str like 'info' or 'ipc:debug', got {logspec!r}"
        )
    parts = [part.strip() for part in logspec.split(",") if part.strip()]
    if len(parts) == 1 and ":" not in parts[0]:
        return {None: _spec_level(parts[0], logspec)}
    reserved = {pkg_name, *([_UPSTREAM_PKG] if pkg_name == LOGGER_NAME else [])}
    out: dict[str | None, str] = {}
    for part in parts:
        sub, sep, level = (piece.strip() for piece in part.partition(":"))
        if not sep:
            raise InvalidArgument(
                f"logging spec {logspec!r}: part {part!r} has no ':'; a spec is either one "
                "bare level or only '<sub-logger>:<level>' parts"
            )
        if not sub or not all(sub.split(".")):
            raise InvalidArgument(f"logging spec {logspec!r}: bad sub-logger name in {part!r}")
        if reserved & set(sub.split(".")):
            raise InvalidArgument(
                f"logging spec {logspec!r}: sub-logger {sub!r} names the package; "
                f"names are relative to {pkg_name!r}"
            )
        out[sub] = _spec_level(level, logspec)
    return out


def _spec_level(level: str, spec: object) -> str:
    try:
        return validate_loglevel(level) or ""
    except LogLevelError as exc:
        raise LogLevelError(f"logging spec {spec!r}: {exc}") from exc


def apply_logspec(
    logspec: LogSpec,
    default_level: str | None = None,
    pkg_name: str = LOGGER_NAME,
) -> tuple[str | None, dict[str, StackLevelAdapter]]:
    """Set the levels a :data:`LogSpec` names and make sure they print to stderr.

    Each named logger (the package logger for a bare level, ``<pkg_name>.<sub>`` for a
    ``'<sub>:<level>'`` part) is set to its level; one stderr handler on the package
    logger prints them all, each record once (a sub-logger's records reach it at the
    sub-logger's own level). Returns the package-level from the spec, else
    ``default_level`` (what to pass to ``open_root_actor(loglevel=...)``), and the
    touched loggers by name. It configures this process only.
    """
    specs = parse_logspec(logspec, default_level=default_level, pkg_name=pkg_name)
    logs: dict[str, StackLevelAdapter] = {}
    for sub, level in specs.items():
        log = get_logger(sub, pkg_name=pkg_name)
        log.logger.setLevel(level_value(level))
        logs[log.logger.name] = log
    if specs:
        _ensure_console(logging.getLogger(pkg_name))
    return specs.get(None, default_level), logs


def get_loglevel() -> str:
    """The package logger's effective level name, lowercase (``'warning'`` if never set)."""
    return logging.getLevelName(logging.getLogger(LOGGER_NAME).getEffectiveLevel()).lower()
