"""Logging set-up shared by roots, children and the CLI."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

LOGGER_NAME = "tractor_reg"
_LEVELS = ("debug", "info", "warning", "error", "critical")


def check_level(level: str) -> str:
    norm = level.lower()
    if norm not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(_LEVELS)}")
    return norm


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


def setup_logging(level: str | None, fmt: str = "text") -> None:
    """Attach one stderr handler to the package logger (idempotent)."""
    if level is None:
        return
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(check_level(level).upper())
    for handler in logger.handlers:
        if getattr(handler, "_tractor_reg", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._tractor_reg = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s %(name)s[{os.getpid()}] %(message)s")
        )
    logger.addHandler(handler)
    logger.propagate = False
