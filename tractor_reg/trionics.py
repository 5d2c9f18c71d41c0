"""Upstream ``tractor.trionics``' task and exception-group helpers for trio code.

``collapse_eg`` / ``get_collapsed_eg`` share their rule with the runtime's own nurseries
(a group that is a chain of one-member groups stands for its single leaf). Upstream's
broadcast receivers belong to streaming, which tractor_reg does not implement: their
names exist and raise :class:`~tractor_reg.NonGoalError` when used.
"""

from __future__ import annotations

import enum
import inspect
import os
import subprocess
import textwrap
import traceback
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from types import ModuleType
from typing import IO, Any, Generic, Literal, NoReturn, TypeVar

import trio

from ._exceptions import InvalidArgument
from ._log import level_value
from ._nongoals import refuse
from ._state import current_actor
from ._util import sole_leaf
from .log import get_logger

__all__ = [
    "AsyncReceiver",
    "BoxedMaybeException",
    "BroadcastReceiver",
    "Lagged",
    "broadcast_receiver",
    "collapse_eg",
    "gather_contexts",
    "get_collapsed_eg",
    "is_multi_cancelled",
    "maybe_open_context",
    "maybe_open_nursery",
    "maybe_raise_from_masking_exc",
    "start_or_cancel",
    "supervise_run_process",
]

log = get_logger("trionics")

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


# -- masked exceptions -------------------------------------------------------------------------


class BoxedMaybeException:
    """What :func:`maybe_raise_from_masking_exc` yields: ``value`` is the last exception
    found masking another one (``None`` while there is none)."""

    def __init__(self, value: BaseException | None = None, raise_on_exit: bool = True) -> None:
        self.value = value
        self.raise_on_exit = raise_on_exit

    def __repr__(self) -> str:
        return f"<BoxedMaybeException value={self.value!r}>"


_MASKING_NOTE = (
    "This can happen when a trio nursery or cancel scope runs an unshielded checkpoint "
    "in a `finally:` or `except:` block."
)

_NEVER_WARN_ON: Mapping[type[BaseException], type[BaseException]] = {
    KeyboardInterrupt: trio.Cancelled,
    trio.Cancelled: trio.Cancelled,
}


def _masked_by_trio_lock(masked: BaseException, masker: BaseException) -> bool:
    """Trio's own ``Lock.acquire()`` parks inside its ``except WouldBlock:``; a cancel
    while parked "masks" that ``WouldBlock``, harmlessly."""
    if not isinstance(masked, trio.WouldBlock):
        return False
    lock_module = os.path.join("trio", "_sync.py")
    return any(
        frame.f_code.co_filename.endswith(lock_module) and frame.f_code.co_name == "acquire"
        for frame, _ in traceback.walk_tb(masker.__traceback__)
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


@asynccontextmanager
async def maybe_raise_from_masking_exc(
    unmask_from: tuple[type[BaseException], ...] = (trio.Cancelled,),
    raise_unmasked: bool = True,
    extra_note: str = _MASKING_NOTE,
    always_warn_on: tuple[type[BaseException], ...] = (trio.Cancelled,),
    never_warn_on: Mapping[type[BaseException], type[BaseException]] = _NEVER_WARN_ON,
) -> AsyncIterator[BoxedMaybeException]:
    """Bring back an exception that a ``trio.Cancelled`` (or another ``unmask_from``
    type) hid as its ``__context__``.

    When the block leaves with an ``unmask_from`` exception (alone or inside an
    exception group) whose ``__context__`` is another exception, that masked exception
    is re-raised ``from`` its masker, with a note saying what masked it (and
    ``extra_note``), and the masker is put in the yielded box's ``value``. A masker of an
    ``always_warn_on`` type also logs the masked traceback as a warning. A pair
    ``masked -> masker`` in ``never_warn_on`` gets neither note nor warning, but is still
    unmasked. ``raise_unmasked=False`` only notes, warns and boxes: the original
    exception propagates. A ``WouldBlock`` masked inside trio's own ``Lock.acquire()`` is
    left masked. ``unmask_from`` must be a tuple of exception types.
    """
    if not isinstance(unmask_from, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in unmask_from
    ):
        raise InvalidArgument(
            f"unmask_from must be a tuple of exception types, got {unmask_from!r}"
        )
    box = BoxedMaybeException(raise_on_exit=raise_unmasked)
    try:
        yield box
    except BaseExceptionGroup as group:
        matched = group.subgroup(unmask_from) if unmask_from else None
        if matched is None:
            raise
        _unmask(_leaves(matched), unmask_from, box, extra_note, always_warn_on, never_warn_on)
        raise
    except unmask_from as exc:
        _unmask([exc], unmask_from, box, extra_note, always_warn_on, never_warn_on)
        raise


def _unmask(
    maskers: list[BaseException],
    unmask_from: tuple[type[BaseException], ...],
    box: BoxedMaybeException,
    extra_note: str,
    always_warn_on: tuple[type[BaseException], ...],
    never_warn_on: Mapping[type[BaseException], type[BaseException]],
) -> None:
    """Raise the first masked exception found among ``maskers``' contexts (when the box
    says so); return to let the caller re-raise the original."""
    for index, masker in enumerate(maskers):
        masked = masker.__context__
        if type(masker) not in unmask_from or masked is None:
            continue
        box.value = masker
        if never_warn_on.get(type(masked)) is not type(masker):
            note = f"^^ this {type(masked).__name__} was masked by a {type(masker).__name__}"
            masked.add_note(f"{note}\n{extra_note}" if extra_note else note)
            if index == 0 and _masked_by_trio_lock(masked, masker):
                log.warning("trio.Lock.acquire() masked a WouldBlock, as it does; not unmasking")
                return
            if type(masker) in always_warn_on:
                log.warning(
                    "%s",
                    "".join(traceback.format_exception(type(masked), masked, masked.__traceback__)),
                )
        if box.raise_on_exit:
            raise masked from masker


# -- starting tasks ----------------------------------------------------------------------------

#: what ``trio.Nursery.start()`` raises for a task that returned before ``started()``.
_NOT_STARTED = "child exited without calling task_status.started()"


async def start_or_cancel(
    nursery: trio.Nursery,
    async_fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: object = None,
) -> Any:
    """``nursery.start(async_fn, *args, name=name)``, except that a task which returned
    before ``task_status.started()`` because this task is being cancelled surfaces as
    that ``trio.Cancelled``, not as trio's ``RuntimeError``. Without a cancellation the
    ``RuntimeError`` (a real bug in ``async_fn``) propagates, as do ``async_fn``'s own
    errors."""
    try:
        return await nursery.start(async_fn, *args, name=name)
    except RuntimeError as exc:
        if exc.args == (_NOT_STARTED,):
            await trio.lowlevel.checkpoint_if_cancelled()
        raise


# -- supervised subprocesses -------------------------------------------------------------------


class _Unset(enum.Enum):
    UNSET = enum.auto()


#: the most stderr kept for a failed process's ``CalledProcessError`` (its last bytes).
STDERR_TAIL_BYTES = 16 * 1024

_MANAGED_KWARGS = ("stdin", "stderr", "check", "capture_stdout", "capture_stderr")


async def _drain(
    stream: trio.abc.ReceiveStream,
    emit: Callable[[str], None] | None,
    tail: bytearray | None,
) -> None:
    """Read ``stream`` to its end: each complete line to ``emit``, the bytes to ``tail``.

    Something must read a piped stream or the child blocks once the pipe buffer is full.
    """
    pending = b""
    async with stream:
        async for chunk in stream:
            if tail is not None:
                tail += chunk
                del tail[: max(0, len(tail) - STDERR_TAIL_BYTES)]
            if emit is None:
                continue
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                emit(line.decode(errors="replace").rstrip("\r"))
    if emit is not None and pending:
        emit(pending.decode(errors="replace").rstrip("\r"))


async def supervise_run_process(
    cmd: Sequence[str] | str,
    *,
    check: bool = True,
    label: str | None = None,
    relay_stdout: bool = False,
    relay_stderr: bool = False,
    relay_level: str = "io",
    stdout: int | IO[Any] | _Unset | None = _Unset.UNSET,
    task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED,
    **run_process_kwargs: Any,
) -> None:
    """Run ``cmd`` with ``trio.run_process``, for ``nursery.start()``; it is started with
    the :class:`trio.Process` and returns when the process has exited.

    The child never shares this terminal: stdin is ``/dev/null``, and stdout too unless
    ``relay_stdout`` or an explicit ``stdout=`` (``None`` inherits; a bare ``PIPE`` is
    refused, nothing would read it). ``relay_stdout`` / ``relay_stderr`` log each line
    as it comes, ``'[<label>:out] line'`` / ``'[<label>:err] line'`` at ``relay_level``
    (default ``io``, 21) on the ``tractor_reg.trionics`` logger; ``label`` defaults to the
    command. With ``check``, a non-zero exit raises ``subprocess.CalledProcessError``
    carrying the last 16 KiB of stderr (also as a note), after all output is read.
    Other keywords (``env``, ``cwd``, ``shell``, ...) go to ``trio.run_process``;
    ``stdin``, ``stderr``, ``check`` there and trio's ``capture_*`` are refused with
    ``InvalidArgument``, as is an unknown ``relay_level`` when relaying. Cancelling the
    task terminates the process as ``trio.run_process`` does.
    """
    for key in _MANAGED_KWARGS:
        if key in run_process_kwargs:
            raise InvalidArgument(
                f"supervise_run_process() sets {key}= itself; use relay_stdout=/"
                "relay_stderr= to see output and check= for the exit status"
            )
    if stdout is subprocess.PIPE:
        raise InvalidArgument(
            "stdout=subprocess.PIPE has no reader and would block the child once the pipe "
            "fills; use relay_stdout=True"
        )
    # The level is looked up only when relaying: a typo cannot break a silent run.
    level = level_value(relay_level) if relay_stdout or relay_stderr else None

    def relay_to(stream_tag: str) -> Callable[[str], None]:
        def emit(line: str) -> None:
            log.log(level or 0, "[%s] %s", stream_tag, line)

        return emit

    tag = label or (cmd if isinstance(cmd, str) else " ".join(cmd))
    options: dict[str, Any] = dict(run_process_kwargs)
    options["stdin"] = subprocess.DEVNULL
    options["check"] = False  # checked below, once the output is all read
    if relay_stdout:
        options["stdout"] = subprocess.PIPE
    else:
        options["stdout"] = subprocess.DEVNULL if stdout is _Unset.UNSET else stdout
    read_stderr = relay_stderr or check
    options["stderr"] = subprocess.PIPE if read_stderr else subprocess.DEVNULL
    tail = bytearray() if check else None
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(partial(trio.run_process, cmd, **options))
        if relay_stdout and proc.stdout is not None:
            nursery.start_soon(_drain, proc.stdout, relay_to(f"{tag}:out"), None)
        if read_stderr and proc.stderr is not None:
            relay = relay_to(f"{tag}:err") if relay_stderr else None
            nursery.start_soon(_drain, proc.stderr, relay, tail)
        task_status.started(proc)
    if check and proc.returncode:
        stderr = bytes(tail or b"")
        failed = subprocess.CalledProcessError(proc.returncode, proc.args, stderr=stderr)
        text = stderr.decode(errors="replace")
        failed.add_note("stderr:\n" + textwrap.indent(text, "   ") if text else "stderr: (empty)")
        raise failed


# -- broadcast receivers (streaming: a non-goal) --------------------------------------------


class AsyncReceiver:
    """Upstream's receive-channel protocol for broadcast receivers; a name only."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        refuse("tractor.trionics.AsyncReceiver", "streaming and contexts")


class BroadcastReceiver:
    """Upstream's fan-out receive channel; a name only."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        refuse("tractor.trionics.BroadcastReceiver", "streaming and contexts")


class Lagged(trio.TooSlowError):
    """Upstream's "a broadcast subscriber fell behind" error. Nothing here raises it, so
    ``except Lagged:`` is harmless; making one is refused."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        refuse("tractor.trionics.Lagged", "streaming and contexts")


def broadcast_receiver(*_args: Any, **_kwargs: Any) -> NoReturn:
    refuse("tractor.trionics.broadcast_receiver()", "streaming and contexts")
