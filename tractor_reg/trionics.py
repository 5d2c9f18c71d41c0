"""Upstream ``tractor.trionics``' task and exception-group helpers for trio code.

``collapse_eg`` / ``get_collapsed_eg`` share their rule with the runtime's own nurseries
(a group that is a chain of one-member groups stands for its single leaf). Upstream's
broadcast receivers belong to streaming, which tractor_reg does not implement.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import ModuleType
from typing import Any, Generic, Literal, TypeVar

import trio

from ._state import current_actor
from ._util import sole_leaf

__all__ = [
    "collapse_eg",
    "gather_contexts",
    "get_collapsed_eg",
    "is_multi_cancelled",
    "maybe_open_context",
    "maybe_open_nursery",
]

T = TypeVar("T")

#: added to an exception that ``collapse_eg`` raised in place of its group.
COLLAPSED_NOTE = "(this exception was collapsed from an exception group)"


def get_collapsed_eg(beg: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single non-group exception ``beg`` wraps (through any depth of one-member
    groups), or ``None`` when it holds several."""
    return sole_leaf(beg)


@asynccontextmanager
async def collapse_eg(
    hide_tb: bool = True,
    ignore: frozenset[type[BaseException]] | set[type[BaseException]] = frozenset(),
    add_notes: bool = True,
    bp: bool = False,
) -> AsyncIterator[None]:
    """Re-raise an exception group from the block as its only member, when it has one.

    This is what ``trio.open_nursery(strict_exception_groups=False)`` used to do: code
    can ``except KeyboardInterrupt`` / ``except ValueError`` around a nursery again.
    Groups with several members are re-raised unchanged, as are lone members whose type
    is in ``ignore``. With ``add_notes`` the collapsed exception gets a note saying so.
    ``bp=True`` (break into upstream's debugger) is not supported: the multi-actor
    debugger is out of tractor_reg's scope.
    """
    __tracebackhide__ = hide_tb
    if bp:
        raise NotImplementedError(
            "collapse_eg(bp=True) needs tractor's debugger, which tractor_reg does not "
            "implement (the multi-actor debugger is out of scope)"
        )
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = get_collapsed_eg(group)
        if leaf is None or type(leaf) in ignore:
            raise
        if add_notes:
            try:
                notes = leaf.__notes__
            except AttributeError:
                notes = []
            if COLLAPSED_NOTE not in notes:
                leaf.add_note(COLLAPSED_NOTE)
        raise leaf from leaf.__cause__


def is_multi_cancelled(
    beg: BaseException,
    ignore_nested: set[type[BaseException]] | frozenset[type[BaseException]] = frozenset(),
) -> Literal[False] | BaseExceptionGroup[BaseException]:
    """The part of group ``beg`` made of ``trio.Cancelled`` (and ``ignore_nested`` types).

    As upstream: for an exception group holding at least one such exception, at any depth,
    the sub-group of those exceptions (:meth:`BaseExceptionGroup.subgroup`); ``False`` for
    a group without any, and for anything that is not a group.
    """
    if not isinstance(beg, BaseExceptionGroup):
        return False
    matched = beg.subgroup((trio.Cancelled, *ignore_nested))
    return False if matched is None else matched


@asynccontextmanager
async def maybe_open_nursery(
    nursery: Any = None,
    shield: bool = False,
    lib: ModuleType = trio,
    **kwargs: Any,
) -> AsyncIterator[Any]:
    """Yield ``nursery`` if given, else a new ``lib.open_nursery(**kwargs)`` for the block.

    ``lib`` is ``trio`` (a :class:`trio.Nursery`, shielded from outside cancellation when
    ``shield``) or ``tractor_reg`` (an actor nursery). A nursery passed in is not waited
    for on exit; one opened here is, as usual.
    """
    if nursery is not None:
        yield nursery
        return
    async with lib.open_nursery(**kwargs) as opened:
        if lib is trio:
            opened.cancel_scope.shield = shield
        yield opened


@asynccontextmanager
async def gather_contexts(
    mngrs: Sequence[AbstractAsyncContextManager[T]],
    tn: trio.Nursery | None = None,
) -> AsyncIterator[tuple[T, ...]]:
    """Enter every async context manager of ``mngrs`` concurrently, one task each.

    Yields their values, in the order of ``mngrs``, once all are entered; on exit they
    are all exited concurrently, in no particular order. An error entering any of them
    cancels the others and propagates. ``tn`` runs the tasks in a nursery of the caller's.
    """
    managers = list(mngrs)
    if not managers:
        raise ValueError(
            "gather_contexts() needs at least one async context manager "
            "(a generator expression is consumed by the first use; pass a list)"
        )
    values: dict[int, T] = {}
    all_entered = trio.Event()
    leave = trio.Event()

    async def hold(index: int, mngr: AbstractAsyncContextManager[T]) -> None:
        async with mngr as value:
            values[index] = value
            if len(values) == len(managers):
                all_entered.set()
            await leave.wait()

    try:
        async with maybe_open_nursery(tn) as nursery:
            for index, mngr in enumerate(managers):
                nursery.start_soon(hold, index, mngr)
            await all_entered.wait()
            yield tuple(values[i] for i in range(len(managers)))
            leave.set()
    finally:
        # The block may have left by an exception: release the holders either way.
        leave.set()


class _Shared(Generic[T]):
    """One cached context: how many blocks use it, and its exit."""

    def __init__(self, value: T) -> None:
        self.value = value
        self.users = 0
        self.release = trio.Event()
        self.exited = trio.Event()
        self.exit_error: Exception | None = None


async def _hold(
    mngr: AbstractAsyncContextManager[T],
    task_status: trio.TaskStatus[_Shared[T]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Enter ``mngr``, report it, and stay inside until its last user releases it."""
    shared: _Shared[T] | None = None
    try:
        async with mngr as value:
            shared = _Shared(value)
            task_status.started(shared)
            await shared.release.wait()
    except Exception as exc:
        if shared is None:
            raise
        # An error leaving the context belongs to its last user, not to the nursery that
        # happens to run this task.
        shared.exit_error = exc
    finally:
        if shared is not None:
            shared.exited.set()


_shared: dict[Hashable, _Shared[Any]] = {}
_locks: dict[Hashable, trio.Lock] = {}


@asynccontextmanager
async def maybe_open_context(
    acm_func: Callable[..., AbstractAsyncContextManager[T]],
    kwargs: dict[str, Any] | None = None,
    key: Hashable | Callable[..., Hashable] = None,
    tn: trio.Nursery | None = None,
) -> AsyncIterator[tuple[bool, T]]:
    """Share one ``acm_func(**kwargs)`` context among the tasks of this actor.

    Yields ``(cache_hit, value)``: the first block to ask enters the context (in a task
    of ``tn``, else of the running actor's service nursery) and gets ``False``; blocks
    asking for the same key while it is open get ``True`` and the same value. The last
    block to leave exits the context, and receives any error its exit raised. The key is
    ``key(**kwargs)`` for a function ``key``, else ``key``, else the items of ``kwargs``
    (which must then be hashable), always together with ``acm_func``.
    """
    kwargs = dict(kwargs or {})
    if inspect.isfunction(key):
        sub_key: Hashable = key(**kwargs)
    else:
        sub_key = key if key is not None else tuple(kwargs.items())
    # The function itself, not its id(): bound methods are new objects on every access but
    # compare equal, and a dead function's id can be reused.
    ctx_key = (acm_func, sub_key)
    lock = _locks.setdefault(ctx_key, trio.Lock())
    async with lock:
        cached: _Shared[T] | None = _shared.get(ctx_key)
        hit = cached is not None
        if cached is None:
            nursery = tn if tn is not None else _service_nursery()
            cached = await nursery.start(_hold, acm_func(**kwargs))
            _shared[ctx_key] = cached
        shared: _Shared[T] = cached
        shared.users += 1
    try:
        yield hit, shared.value
    finally:
        shared.users -= 1
        if shared.users == 0:
            # Under the lock, so an entrant either joins before this check or finds the
            # key free and opens a fresh context once the old one has fully exited.
            with trio.CancelScope(shield=True):
                async with lock:
                    if shared.users == 0 and _shared.get(ctx_key) is shared:
                        del _shared[ctx_key]
                        shared.release.set()
                        await shared.exited.wait()
                        if not lock.statistics().tasks_waiting:
                            del _locks[ctx_key]
            if shared.exit_error is not None:
                raise shared.exit_error


def _service_nursery() -> trio.Nursery:
    service = current_actor()._service
    if service is None:
        raise RuntimeError("maybe_open_context() needs a running actor or a tn= nursery")
    return service
