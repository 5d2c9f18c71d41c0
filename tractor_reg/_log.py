"""Logging set-up shared by roots, children and the CLI, and the log levels they accept.

Besides the stdlib levels, upstream ``tractor``'s extra levels are real ``logging`` levels
here (registered with :func:`logging.addLevelName` on import), so every ``loglevel=`` and
``--log-level`` takes them, case-insensitively: ``transport`` (5), ``runtime`` (15),
``devx`` (17), ``cancel`` (22) and ``pdb`` (500).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Any, TextIO

from ._exceptions import InvalidArgument

LOGGER_NAME = "tractor_reg"

#: the environment variable upstream's ``open_root_actor`` takes its log level from; it
#: wins over the ``loglevel=`` argument (see :func:`env_loglevel`).
ENV_LOGLEVEL = "TRACTOR_LOGLEVEL"

#: whether :func:`env_loglevel` consults :data:`ENV_LOGLEVEL`; the CLI turns it off, since
#: its own ``--log-level`` / ``$TRACTOR_REG_LOG_LEVEL`` already configured logging.
HONOUR_ENV_LOGLEVEL: ContextVar[bool] = ContextVar("HONOUR_ENV_LOGLEVEL", default=True)

#: upstream's extra levels: name -> numeric value (the stdlib's DEBUG is 10, INFO 20).
#: ``IO`` (21) is what ``trionics.supervise_run_process`` relays a subprocess's output
#: lines at: just above INFO, so an ``info`` console shows them.
CUSTOM_LEVELS: dict[str, int] = {
    "TRANSPORT": 5,
    "RUNTIME": 15,
    "DEVX": 17,
    "IO": 21,
    "CANCEL": 22,
    "PDB": 500,
}

_STD_LEVELS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

#: every accepted level name (lowercase) -> numeric value, lowest first.
LEVELS: dict[str, int] = {}


def _rebuild_levels() -> None:
    # In place: other modules hold references to this very dict.
    merged = sorted({**_STD_LEVELS, **CUSTOM_LEVELS}.items(), key=lambda kv: kv[1])
    LEVELS.clear()
    LEVELS.update((name.lower(), value) for name, value in merged)


class LogLevelError(InvalidArgument):
    """A log level that is neither a stdlib level name nor one of upstream's extra ones."""


def register_level(name: str, value: int) -> str:
    """Make ``name`` (any case) a log level of ``value`` everywhere; returns it uppercased.

    Re-registering an extra level moves it to the new value. A stdlib level name, a value
    another level already has, a name that is not an identifier, or a value outside
    1..1000 is a :class:`LogLevelError` (a stdlib name or a shared value would rename an
    existing level for the whole process).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise LogLevelError(f"a new log level needs an identifier for a name, got {name!r}")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise LogLevelError(f"log level {name!r} needs an int value in 1..1000, got {value!r}")
    upper = name.upper()
    if upper in _STD_LEVELS or (
        upper in logging.getLevelNamesMapping() and upper not in CUSTOM_LEVELS
    ):
        raise LogLevelError(f"{name!r} is a standard logging level and cannot be redefined")
    for other, other_value in LEVELS.items():
        if other_value == value and other.upper() != upper:
            raise LogLevelError(
                f"log level value {value} already belongs to {other!r}; pick another value"
            )
    old = CUSTOM_LEVELS.get(upper)
    CUSTOM_LEVELS[upper] = value
    _rebuild_levels()
    if old is not None and old != value:
        # The old number stops being a named level rather than keep the moved name.
        logging.addLevelName(old, f"Level {old}")
    logging.addLevelName(value, upper)
    return upper


_rebuild_levels()
for _name, _value in CUSTOM_LEVELS.items():
    logging.addLevelName(_value, _name)


def check_level(level: str) -> str:
    """``level`` normalised to its lowercase name; :class:`LogLevelError` if unknown."""
    if not isinstance(level, str):
        raise LogLevelError(
            f"a log level is a level name (str), got {level!r}; expected one of {', '.join(LEVELS)}"
        )
    norm = level.strip().lower()
    if norm not in LEVELS:
        raise LogLevelError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    return norm


def validate_loglevel(level: str | None) -> str | None:
    """Check a ``loglevel=`` argument before it is used or handed to a child actor.

    ``None`` (inherit / leave logging alone) passes through; a known name, in any case,
    comes back lowercased; anything else raises :class:`LogLevelError` (a ``ValueError``)
    listing the valid names, so a bad child level fails in the parent, not in the child.
    """
    if level is None:
        return None
    return check_level(level)


def env_loglevel(loglevel: str | None) -> str | None:
    """The level a root actor uses: ``$TRACTOR_LOGLEVEL`` when set (as upstream, it wins
    over the ``loglevel=`` argument), else ``loglevel``; checked and lowercased."""
    raw = os.environ.get(ENV_LOGLEVEL, "").strip() if HONOUR_ENV_LOGLEVEL.get() else ""
    if not raw:
        return validate_loglevel(loglevel)
    try:
        return check_level(raw)
    except LogLevelError as exc:
        raise LogLevelError(f"${ENV_LOGLEVEL}: {exc}") from exc


def level_value(level: str) -> int:
    """The numeric ``logging`` level of an accepted level name (any case)."""
    return LEVELS[check_level(level)]


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, pid, msg (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler this package installs; at most one per logger.

    It writes to whatever ``sys.stderr`` is when a record is emitted (as the stdlib's
    last-resort handler does), so a stderr redirected after the handler was installed
    is followed instead of writing into a stream nobody reads any more.

    ``kind`` is ``"text"`` or ``"json"`` for the runtime's own formats, ``"console"``
    for the one ``tractor_reg.log.get_console_log()`` chose.
    """

    def __init__(self, kind: str = "text") -> None:
        super().__init__()
        self.kind = kind

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr


def console_handler(fmt: str = "text") -> ConsoleHandler:
    handler = ConsoleHandler(fmt)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s %(name)s[{os.getpid()}] %(message)s")
        )
    return handler


def install_console(logger: logging.Logger, fmt: str = "text") -> None:
    """Give ``logger`` exactly one :class:`ConsoleHandler` (replacing an earlier one)."""
    add_console(logger, console_handler(fmt))


def add_console(logger: logging.Logger, handler: ConsoleHandler) -> None:
    """Make ``handler`` the one :class:`ConsoleHandler` of ``logger``."""
    for old in list(logger.handlers):
        if isinstance(old, ConsoleHandler):
            logger.removeHandler(old)
    logger.addHandler(handler)


def console_of(logger: logging.Logger) -> ConsoleHandler | None:
    for handler in logger.handlers:
        if isinstance(handler, ConsoleHandler):
            return handler
    return None


def has_console(logger: logging.Logger) -> bool:
    return console_of(logger) is not None


def setup_logging(level: str | None, fmt: str = "text") -> None:
    """Set the package logger's level and attach one stderr handler (idempotent).

    A console that ``get_console_log()`` installed stays for the plain ``"text"``
    format: the program chose that look itself.
    """
    if level is None:
        return
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level_value(level))
    current = console_of(logger)
    if current is None or not (fmt == "text" and current.kind == "console"):
        install_console(logger, fmt)
    logger.propagate = False
