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
from typing import Any, TextIO

from ._exceptions import InvalidArgument

LOGGER_NAME = "tractor_reg"

#: upstream's extra levels: name -> numeric value (the stdlib's DEBUG is 10, INFO 20).
CUSTOM_LEVELS: dict[str, int] = {
    "TRANSPORT": 5,
    "RUNTIME": 15,
    "DEVX": 17,
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
LEVELS: dict[str, int] = {
    name.lower(): value
    for name, value in sorted({**_STD_LEVELS, **CUSTOM_LEVELS}.items(), key=lambda kv: kv[1])
}

for _name, _value in CUSTOM_LEVELS.items():
    logging.addLevelName(_value, _name)


class LogLevelError(InvalidArgument):
    """A log level that is neither a stdlib level name nor one of upstream's extra ones."""


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
    """

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr


def console_handler(fmt: str = "text") -> ConsoleHandler:
    handler = ConsoleHandler()
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s %(name)s[{os.getpid()}] %(message)s")
        )
    return handler


def install_console(logger: logging.Logger, fmt: str = "text") -> None:
    """Give ``logger`` exactly one :class:`ConsoleHandler` (replacing an earlier one)."""
    for handler in list(logger.handlers):
        if isinstance(handler, ConsoleHandler):
            logger.removeHandler(handler)
    logger.addHandler(console_handler(fmt))


def has_console(logger: logging.Logger) -> bool:
    return any(isinstance(h, ConsoleHandler) for h in logger.handlers)


def setup_logging(level: str | None, fmt: str = "text") -> None:
    """Set the package logger's level and attach one stderr handler (idempotent)."""
    if level is None:
        return
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level_value(level))
    install_console(logger, fmt)
    logger.propagate = False
