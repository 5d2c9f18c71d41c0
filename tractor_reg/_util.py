"""Small helpers shared by the runtime modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """What a chain of one-member groups wraps (a leaf or a group of several), or
    ``None`` when ``group`` itself has several members."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return None if exc is group else exc


def sole_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single non-group exception a chain of one-member groups wraps, else ``None``."""
    inner = _unwrap(group)
    return None if isinstance(inner, BaseExceptionGroup) else inner


@contextmanager
def collapse_eg() -> Iterator[None]:
    """Re-raise a trio nursery's one-member exception group as its only member.

    The runtime runs user code inside nurseries it owns; users should see the exception
    their code raised, not a group wrapping it. A group of several members is what the
    code raised (each member matters): it is re-raised as it is, without the one-member
    groups nurseries wrapped around it.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        inner = _unwrap(group)
        if inner is None:
            raise
        raise inner from inner.__cause__
