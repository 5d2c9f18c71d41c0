"""Small helpers shared by the runtime modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def sole_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single exception a chain of one-member groups wraps, else ``None``."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@contextmanager
def collapse_eg() -> Iterator[None]:
    """Re-raise a trio nursery's one-member exception group as its only member.

    The runtime runs user code inside nurseries it owns; users should see the exception
    their code raised, not a group wrapping it. Groups with several members are left
    alone, since each member matters.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = sole_leaf(group)
        if leaf is None:
            raise
        raise leaf from leaf.__cause__
