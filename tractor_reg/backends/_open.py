"""Building backends from URLs.

A backend URL's scheme picks the class: first from the built-in :data:`BACKENDS` table,
then from installed plugins, i.e. entry points in the group ``tractor_reg.backends``
whose name is the scheme and whose value is the backend class. The class builds itself
from the full URL through a ``from_url(url, *, clock)`` classmethod, which owns the
parsing of host, path and query options for its scheme.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import trio

from .._exceptions import BackendError, BackendURLError
from .._util import collapse_eg
from ._base import DEFAULT_CLOCK, Clock, RegistryBackend

__all__ = ["BACKENDS", "ENTRY_POINT_GROUP", "open_backend", "opened_backend"]

#: Built-in schemes: scheme -> ``"module:Class"``. Imported lazily, so a backend's driver
#: is only needed when its scheme is used. New built-in backends add a row here.
BACKENDS: dict[str, str] = {
    "memory": "tractor_reg.backends._memory:MemoryBackend",
    "sqlite": "tractor_reg.backends._sqlite:SQLiteBackend",
    "redis": "tractor_reg.backends._redis:RedisBackend",
    "rediss": "tractor_reg.backends._redis:RedisBackend",
    "unix": "tractor_reg.backends._redis:RedisBackend",
    "redis+cluster": "tractor_reg.backends._redis:RedisBackend",
    "rediss+cluster": "tractor_reg.backends._redis:RedisBackend",
}

#: Entry-point group that third-party backends register their class under.
ENTRY_POINT_GROUP = "tractor_reg.backends"


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo (``user:password@``) replaced by ``***``.

    Works on the raw text (so percent-encoded passwords and URLs that do not parse are
    covered too); the user name is kept to help diagnose ACL problems.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = len(rest)
    for stop in ("/", "?", "#"):
        pos = rest.find(stop)
        if pos != -1:
            authority_end = min(authority_end, pos)
    authority = rest[:authority_end]
    if "@" not in authority:
        return url
    userinfo, _, hosts = authority.rpartition("@")
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{hosts}{rest[authority_end:]}"


def positive_option(name: str, raw: str) -> float:
    """A URL query option that must be a finite number > 0 (seconds, usually)."""
    try:
        value = float(raw)
    except ValueError:
        raise BackendURLError(f"option {name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise BackendURLError(f"option {name}={raw!r} must be > 0")
    return value


def retention_option(name: str, raw: str) -> int:
    """A URL query option counting retained change-log rows (an integer >= 1000)."""
    if not raw.isdigit() or int(raw) < 1000:
        raise BackendURLError(f"{name}={raw!r} must be an integer >= 1000")
    return int(raw)


def _plugin_entry_points() -> metadata.EntryPoints:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _known_schemes() -> list[str]:
    return sorted(set(BACKENDS) | {ep.name for ep in _plugin_entry_points()})


def _import_path(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve_class(scheme: str, url: str) -> Any:
    if scheme in BACKENDS:
        target = BACKENDS[scheme]
        try:
            return _import_path(target)
        except (ImportError, AttributeError) as exc:
            raise BackendError(f"cannot import backend {target!r} for {scheme}://") from exc
    matches = [ep for ep in _plugin_entry_points() if ep.name == scheme]
    if not matches:
        known = ", ".join(f"{s}://" for s in _known_schemes())
        raise BackendURLError(
            f"unknown backend scheme {scheme!r} in {redact_url(url)!r}; known: {known}"
        )
    if len({ep.value for ep in matches}) > 1:
        values = ", ".join(sorted({ep.value for ep in matches}))
        raise BackendError(f"several plugins claim the {scheme}:// scheme: {values}")
    try:
        return matches[0].load()
    except Exception as exc:
        raise BackendError(
            f"cannot load backend plugin {matches[0].value!r} for {scheme}://"
        ) from exc


def open_backend(url: str, *, clock: Clock = DEFAULT_CLOCK) -> RegistryBackend:
    """Build (but do not open) the backend a URL names.

    Raises :class:`~tractor_reg.BackendURLError` if ``url`` is not a non-empty str, is
    malformed, has no scheme, has a scheme no built-in backend or plugin handles (the
    message lists the known schemes), or has options its backend rejects; and
    :class:`~tractor_reg.BackendError` if the backend class cannot be imported or is not
    a :class:`RegistryBackend`.
    """
    if not isinstance(url, str):
        raise BackendURLError(f"backend URL must be a str, got {type(url).__name__}")
    if not url:
        raise BackendURLError("backend URL is empty")
    if url != url.strip() or any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise BackendURLError(
            f"malformed backend URL {redact_url(url)!r}: whitespace or control char"
        )
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise BackendURLError(f"malformed backend URL {redact_url(url)!r}: {exc}") from exc
    if not scheme:
        known = ", ".join(f"{s}://" for s in _known_schemes())
        raise BackendURLError(f"backend URL {redact_url(url)!r} has no scheme; known: {known}")

    cls = _resolve_class(scheme, url)
    from_url = getattr(cls, "from_url", None)
    if not callable(from_url):
        raise BackendError(f"backend class {cls!r} for {scheme}:// has no from_url()")
    backend = from_url(url, clock=clock)
    if not isinstance(backend, RegistryBackend):
        raise BackendError(f"{cls!r}.from_url() did not return a RegistryBackend")
    return backend


@asynccontextmanager
async def opened_backend(
    url_or_backend: str | RegistryBackend, *, clock: Clock = DEFAULT_CLOCK
) -> AsyncIterator[RegistryBackend]:
    """Open a backend for the duration of the block and always close it.

    A str is built with :func:`open_backend` (using ``clock``); a backend instance must
    not be opened yet and is used as is (``clock`` is ignored). ``aclose`` runs in a
    shielded scope, so it completes even when the block raises or is cancelled, and also
    when ``open`` itself failed part way. A backend with a ``run()`` coroutine method
    (optional background upkeep) has it running for the duration of the block.
    """
    if isinstance(url_or_backend, RegistryBackend):
        backend = url_or_backend
    else:
        backend = open_backend(url_or_backend, clock=clock)
    try:
        await backend.open()
        maintain = getattr(backend, "run", None)
        if maintain is None:
            yield backend
        else:
            # Optional background upkeep (e.g. following other processes' writes).
            with collapse_eg():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(maintain)
                    try:
                        yield backend
                    finally:
                        nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await backend.aclose()
