"""Spawning and supervising child actor processes: ``open_nursery`` and ``ActorNursery``."""

from __future__ import annotations

import collections
import inspect
import io
import logging
import math
import os
import signal
import subprocess
import sys
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from . import _state
from ._actor import MAIN_MODULE_PREFIX, Actor
from ._addr import (
    Address,
    AddressLike,
    TCPAddress,
    UDSAddress,
    check_uds_path,
    runtime_dir,
    unwrap_address,
    wrap_address,
)
from ._exceptions import (
    ActorCrashed,
    ContextCancelled,
    InvalidArgument,
    RemoteActorError,
    TransportClosed,
    unpack_error,
)
from ._log import CUSTOM_LEVELS, check_level
from ._msg import Error
from ._options import check_non_goal_flags, merge_bind_addrs, module_list, transport_list
from ._portal import Portal, _func_ref
from ._util import collapse_eg

log = logging.getLogger("tractor_reg.spawn")

#: How long a child may take from exec to connecting back (seconds).
DEFAULT_SPAWN_TIMEOUT = 60.0
#: How long a child gets to exit after a graceful cancel before SIGTERM, then SIGKILL.
DEFAULT_REAP_GRACE = 3.0
#: How long a child gets to exit after SIGTERM before SIGKILL.
TERM_WAIT = 1.0
#: An actor that must exit by a deadline keeps this much of the time it has left (at
#: most a quarter of it) for its own teardown, and as much again, before that, for its
#: children's SIGTERM phase; their graceful phase gets the rest. A fixed reserve, not a
#: share, so that each level of a deep tree costs about the same.
_RESERVE = 0.3
#: How many reserves are still ahead at the end of each phase.
_AFTER_GRACEFUL = 2
_AFTER_TERM = 1
_STDERR_TAIL = 8192


class SpawnSpec(msgspec.Struct, frozen=True):
    """Everything a child process needs to boot its actor (sent on its stdin)."""

    name: str
    uuid: str
    parent_addr: tuple[str, int | str]
    reg_addrs: list[tuple[str, int | str]]
    enable_modules: list[str]
    bind_addrs: list[tuple[str, int | str]]
    sys_path: list[str]
    main_path: str | None = None
    loglevel: str | None = None
    lease_ttl: float = 30.0
    renew_interval: float | None = None
    max_frame_size: int = 4 * 1024 * 1024
    handshake_timeout: float = 5.0
    connect_timeout: float = 5.0
    call_timeout: float = 10.0
    secret: bytes | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: The root actor's addresses (``get_runtime_vars()['_root_addrs']`` in the child).
    root_addrs: list[tuple[str, int | str]] = []
    #: A pipe the child writes a boxed ``Error`` to if it fails before it connected back
    #: to its parent (e.g. an ``enable_modules`` import error); closed once it did.
    report_fd: int | None = None
    #: The parent's extra log levels (name -> value), ``add_log_level()`` ones included,
    #: registered in the child before its ``loglevel`` is applied.
    log_levels: dict[str, int] = {}


#: Bytes of boot report kept; a longer one is drained and ignored (crash report instead).
_REPORT_MAX = 1 << 20


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidArgument(f"actor name must be a non-empty str without NUL, got {name!r}")


#: The ``proc_kwargs`` a caller may set: the rest (pipes, session) the nursery needs itself.
_PROC_KWARGS = frozenset({"env", "cwd"})


@dataclass
class _SpawnOptions:
    """A child's settings, checked in the parent before any process starts."""

    modules: list[str]
    loglevel: str | None
    transports: list[str] | None
    bind_addrs: list[Address]
    proc_kwargs: dict[str, Any]
    inherit_parent_main: bool


def _spawn_options(
    enable_modules: Sequence[str] | None,
    rpc_module_paths: Sequence[str] | None,
    loglevel: str | None,
    enable_transports: Sequence[str] | None,
    bind_addrs: Sequence[AddressLike] | None,
    proc_kwargs: dict[str, Any] | None,
    *,
    debug_mode: bool | None = None,
    infect_asyncio: bool = False,
    inherit_parent_main: bool = True,
) -> _SpawnOptions:
    check_non_goal_flags(debug_mode=debug_mode, infect_asyncio=infect_asyncio)
    modules = module_list(enable_modules, rpc_module_paths)
    transports = None if enable_transports is None else transport_list(enable_transports)
    extra = dict(proc_kwargs or {})
    unknown = sorted(set(extra) - _PROC_KWARGS)
    if unknown:
        raise TypeError(
            f"proc_kwargs {unknown} cannot be set: a child's pipes and session belong to its "
            f"nursery (allowed: {sorted(_PROC_KWARGS)})"
        )
    return _SpawnOptions(
        modules=modules,
        loglevel=None if loglevel is None else check_level(loglevel),
        transports=transports,
        bind_addrs=list(merge_bind_addrs(bind_addrs, None) or []),
        proc_kwargs=extra,
        inherit_parent_main=inherit_parent_main,
    )


class _Child:
    def __init__(self, name: str, uuid: str, proc: trio.Process, leader: bool) -> None:
        self.name = name
        self.uuid = uuid
        self.proc = proc
        #: The child leads a process group that holds its whole subtree (it was spawned
        #: by a root actor); every actor below it inherits that group.
        self.leader = leader
        self.portal: Portal | None = None
        self.spawned = False
        self.reaping = False
        #: True from the moment the process is known to have exited (it may be reaped
        #: at the next checkpoint: its pid is no longer ours to signal).
        self.dead = False
        #: Set once the process has exited and was reaped (``returncode`` is then known).
        self.exited = trio.Event()
        self.returncode: int | None = None
        self.stderr_tail: collections.deque[bytes] = collections.deque()
        self.stderr_done = trio.Event()
        self.report = bytearray()
        self.report_done = trio.Event()
        # run_in_actor bookkeeping
        self.oneshot = False
        self.result_ready = trio.Event()
        self.result_value: Any = None
        self.result_error: BaseException | None = None
        self.result_consumed = False
        #: Set once a run_in_actor child may go: the nursery's block ended, or the
        #: nursery is cancelling.
        self.released = trio.Event()

    def tail(self) -> str:
        return b"".join(self.stderr_tail).decode("utf-8", "replace")[-_STDERR_TAIL:]

    def crashed(self, when: str) -> ActorCrashed:
        # Never poll the process here: only the monitor reaps it (see _monitor).
        code = self.returncode
        if code is None:
            how = "lost its connection to its parent"
        elif code < 0:
            how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return ActorCrashed(
            f"actor {self.name!r} {how} {when}",
            boxed_type=ActorCrashed,
            tb_str=self.tail(),
            src_uid=(self.name, self.uuid),
        )

    def boot_error(self) -> RemoteActorError | None:
        """The error the child reported before it could connect back, if it did."""
        if not self.report or len(self.report) > _REPORT_MAX:
            return None
        try:
            msg = msgspec.msgpack.decode(bytes(self.report), type=Error)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("actor %r sent an unreadable boot report", self.name)
            return None
        return unpack_error(
            msg, f"actor {self.name!r} failed to start: {msg.type_name}: {msg.message}"
        )


def _main_path(actor: Actor) -> str | None:
    """The program a child should load as ``__main__``/``__mp_main__``: in a root actor,
    the program's own script (or, for ``python -m pkg.mod``, ``module:pkg.mod``, which the
    child imports by name so its relative imports work); in a child, what its parent
    passed on."""
    if actor.parent_addr is not None:
        return actor.main_path
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = main.__spec__
    if spec is not None and spec.name and spec.name != "__main__":
        # run with -m: the test runner's own entry point is nobody's program
        return None if spec.name.startswith("pytest") else MAIN_MODULE_PREFIX + spec.name
    path: str | None = getattr(main, "__file__", None)
    if path and os.path.exists(path) and not path.endswith(("pytest", "__main__.py")):
        return os.path.abspath(path)
    return None


def _drain_stderr(fd: int, tail: collections.deque[bytes]) -> None:
    """Copy a child's stderr pipe to ours until EOF, keeping its last bytes in ``tail``
    (runs in a thread; deque appends and pops are atomic)."""
    out = sys.stderr.buffer if isinstance(sys.stderr, io.TextIOWrapper) else None
    size = 0
    try:
        while chunk := os.read(fd, 65536):
            tail.append(chunk)
            size += len(chunk)
            while size > _STDERR_TAIL and len(tail) > 1:
                size -= len(tail.popleft())
            try:
                if out is not None:
                    out.write(chunk)
                    out.flush()
                else:
                    sys.stderr.write(chunk.decode("utf-8", "replace"))
                    sys.stderr.flush()
            except (OSError, ValueError):
                out = None  # our own stderr is gone or closed: keep draining the pipe
    finally:
        os.close(fd)


def _signal(child: _Child, sig: signal.Signals) -> None:
    """Send ``sig`` to a child that has not exited yet (its pid is still its own).

    SIGKILL goes to a leader's whole process group, so that a subtree whose middle is
    stuck or already dead goes down with it."""
    if child.dead:
        return
    try:
        if child.leader and sig == signal.SIGKILL:
            os.killpg(child.proc.pid, sig)
        else:
            os.kill(child.proc.pid, sig)
    except ProcessLookupError:
        pass


async def _set_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _exited_unreaped(proc: trio.Process) -> None:
    """Wait until ``proc`` has exited, without reaping it (its pid stays reserved)."""
    if sys.platform == "linux":
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            pass  # a kernel before 5.3: wait as elsewhere
        else:
            try:
                await trio.lowlevel.wait_readable(fd)
            finally:
                os.close(fd)
            return
    await trio.to_thread.run_sync(
        os.waitid, os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT, abandon_on_cancel=True
    )


class ActorNursery:
    """Spawns child actors and guarantees they are all gone when its block exits.

    ``start_actor`` starts a long-lived (daemon) actor; ``run_in_actor`` starts one that
    runs a single function, whose result ``portal.result()`` returns. Leaving the block
    waits for every ``run_in_actor`` result, then cancels every remaining child; on an
    error, cancellation or Ctrl-C it cancels them at once. A child that exits with an
    error code on its own raises :class:`ActorCrashed` (a :class:`RemoteActorError`) here.
    A child that fails before it is up (an ``enable_modules`` import error, ...) makes
    ``start_actor``/``run_in_actor`` raise a :class:`RemoteActorError` boxing that error.
    Several failed ``run_in_actor`` results leave the block as one flat exception group.
    """

    # The public instance attributes (set in __init__).
    cancel_called: bool
    cancelled_caught: bool
    reap_grace: float

    def __init__(self, actor: Actor, nursery: trio.Nursery) -> None:
        self._actor = actor
        self._nursery = nursery
        self._children: dict[str, _Child] = {}
        config = getattr(actor, "runtime_config", None)
        self._transports: list[str] = list(
            getattr(config, "enable_transports", None)
            or sorted({a.transport for a in actor.accept_addrs})
        )
        self._loglevel: str | None = getattr(config, "loglevel", None)
        self.spawn_timeout = DEFAULT_SPAWN_TIMEOUT
        self.reap_grace = DEFAULT_REAP_GRACE
        # One thread per live child drains its stderr: never wait for a free thread.
        self._relay_threads = trio.CapacityLimiter(math.inf)
        #: Whether :meth:`cancel` ran (explicitly, or when the block ended).
        self.cancel_called = False
        #: Whether the last :meth:`cancel` saw every child go without a signal.
        self.cancelled_caught = False

    @property
    def children(self) -> dict[tuple[str, str], Portal]:
        return {
            (c.name, c.uuid): c.portal
            for c in self._children.values()
            if c.portal is not None and not c.exited.is_set()
        }

    async def start_actor(
        self,
        name: str,
        *,
        bind_addrs: Sequence[AddressLike] | None = None,
        rpc_module_paths: Sequence[str] | None = None,
        enable_transports: Sequence[str] | None = None,
        enable_modules: Sequence[str] | None = None,
        loglevel: str | None = None,
        debug_mode: bool | None = None,
        infect_asyncio: bool = False,
        inherit_parent_main: bool = True,
        nursery: trio.Nursery | None = None,
        proc_kwargs: dict[str, Any] | None = None,
    ) -> Portal:
        """Start a daemon child actor and return a portal to it once it registered.

        Upstream's keywords are accepted. ``bind_addrs`` are the addresses the child
        listens on (default: fresh ones of each enabled transport); ``rpc_module_paths``
        adds to ``enable_modules``; ``inherit_parent_main=False`` keeps the parent's
        script from being loaded in the child even when ``__main__`` is enabled;
        ``proc_kwargs`` may set the child's ``env`` and ``cwd``. ``nursery`` is accepted
        and unused (children are always supervised by this nursery); ``debug_mode`` and
        ``infect_asyncio`` must stay false.
        """
        _check_name(name)
        options = _spawn_options(
            enable_modules,
            rpc_module_paths,
            loglevel,
            enable_transports,
            bind_addrs,
            proc_kwargs,
            debug_mode=debug_mode,
            infect_asyncio=infect_asyncio,
            inherit_parent_main=inherit_parent_main,
        )
        child = await self._spawn(name, options)
        assert child.portal is not None
        return child.portal

    async def run_in_actor(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        bind_addrs: Sequence[AddressLike] | None = None,
        rpc_module_paths: Sequence[str] | None = None,
        enable_modules: Sequence[str] | None = None,
        loglevel: str | None = None,
        infect_asyncio: bool = False,
        inherit_parent_main: bool = True,
        proc_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Portal:
        """Start a child that runs ``fn(**kwargs)`` once; ``await portal.wait_for_result()``.

        Takes :meth:`start_actor`'s keywords; every other keyword is an argument of ``fn``.
        ``fn``'s module is enabled in the child.
        """
        module, fname = _func_ref(fn)
        try:
            msgspec.msgpack.encode(kwargs)
        except (TypeError, msgspec.EncodeError) as exc:
            # Before any process starts: the call carrying them could never be sent.
            raise TypeError(f"run_in_actor({fname}) arguments cannot be sent: {exc}") from exc
        options = _spawn_options(
            enable_modules,
            rpc_module_paths,
            loglevel,
            None,
            bind_addrs,
            proc_kwargs,
            infect_asyncio=infect_asyncio,
            inherit_parent_main=inherit_parent_main,
        )
        options.modules.insert(0, module)
        if name is not None:
            _check_name(name)
        child = await self._spawn(name or fname, options)
        child.oneshot = True
        portal = child.portal
        assert portal is not None

        async def _wait_result() -> Any:
            await child.result_ready.wait()
            child.result_consumed = True
            if child.result_error is not None:
                raise child.result_error
            return child.result_value

        portal._result_waiter = _wait_result
        self._nursery.start_soon(self._run_oneshot, child, fn, kwargs)
        return portal

    async def cancel(self, hard_kill: bool = False) -> None:
        """Cancel every child now (gracefully unless ``hard_kill``) and wait until gone.

        Afterwards :attr:`cancelled_caught` tells whether every child went without a
        signal (it exited on its own or honoured the graceful cancel).
        """
        self.cancel_called = True
        self._release_all()
        forced: list[_Child] = []

        async def _reap_one(child: _Child) -> None:
            if not await self._reap(child, hard_kill):
                forced.append(child)

        async with trio.open_nursery() as nursery:
            for child in list(self._children.values()):
                nursery.start_soon(_reap_one, child)
        self.cancelled_caught = not forced

    # -- internals -----------------------------------------------------------------------

    async def _spawn(self, name: str, options: _SpawnOptions) -> _Child:
        actor = self._actor
        modules = options.modules
        loglevel = options.loglevel
        uuid = str(uuidlib.uuid4())
        parent_addr = next(
            (a for a in actor.accept_addrs if isinstance(a, UDSAddress)), actor.accept_addrs[0]
        )
        # Passed on whether or not this child enables the script, so that its own
        # children can load it: functions defined in it keep working at every depth.
        main_path = _main_path(actor) if options.inherit_parent_main else None
        chosen = list(options.transports or self._transports)
        binds: list[tuple[str, int | str]] = [unwrap_address(a) for a in options.bind_addrs]
        for transport in chosen if not binds else ():
            if transport == "tcp":
                tcp = next((a for a in actor.accept_addrs if isinstance(a, TCPAddress)), None)
                binds.append((tcp.host if tcp else "127.0.0.1", 0))
            else:
                # Keep a tree's sockets together: next to the parent's, when it has one.
                uds = next((a for a in actor.accept_addrs if isinstance(a, UDSAddress)), None)
                directory = uds.directory if uds else str(runtime_dir())
                binds.append((directory, f"{name}@{uuid[:8]}.sock"))
        for bind in binds:
            # A socket name or path the child could not bind fails here, not in a child.
            address = wrap_address(bind)
            if isinstance(address, UDSAddress):
                check_uds_path(address)
        config = getattr(actor, "runtime_config", None)
        spec = SpawnSpec(
            name=name,
            uuid=uuid,
            parent_addr=unwrap_address(parent_addr),
            reg_addrs=[unwrap_address(a) for a in actor.reg_addrs],
            enable_modules=modules,
            bind_addrs=binds,
            sys_path=[p for p in sys.path if p],
            main_path=main_path,
            loglevel=loglevel or self._loglevel,
            lease_ttl=actor.lease_ttl,
            renew_interval=getattr(config, "renew_interval", None) or actor.renew_interval,
            max_frame_size=actor.max_frame_size,
            handshake_timeout=actor.handshake_timeout,
            connect_timeout=actor.connect_timeout,
            call_timeout=actor.call_timeout,
            # over the child's stdin pipe, never its command line or environment
            secret=actor.security.secret,
            tls_cert=actor.security.tls.cert if actor.security.tls else None,
            tls_key=actor.security.tls.key if actor.security.tls else None,
            tls_ca=actor.security.tls.ca if actor.security.tls else None,
            root_addrs=_state.get_runtime_vars()["_root_addrs"],
            log_levels=dict(CUSTOM_LEVELS),
        )
        report_r, report_w = os.pipe()
        spec = msgspec.structs.replace(spec, report_fd=report_w)
        # The child's stderr is drained by a thread (see _relay_stderr), on a pipe of ours.
        err_r, err_w = os.pipe()
        # A root's child leads a new session and process group (away from the terminal's
        # Ctrl-C, which the root handles); deeper actors stay in that group, so that one
        # killpg ends a subtree even when an actor in its middle is stuck or gone.
        leader = actor.parent_addr is None
        arrived, slot = actor.expect_child(uuid)
        started = False
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "tractor_reg._child"],
                stdin=subprocess.PIPE,
                stderr=err_w,
                start_new_session=leader,
                pass_fds=(report_w,),
                **options.proc_kwargs,
            )
            started = True
        finally:
            # The child holds the only write ends: EOF once it connected back or exited
            # (stderr: once its whole subtree exited).
            os.close(report_w)
            os.close(err_w)
            if not started:
                os.close(report_r)
                os.close(err_r)
                actor.forget_child(uuid)
        child = _Child(name, uuid, proc, leader)
        self._children[uuid] = child
        self._nursery.start_soon(self._read_report, child, trio.lowlevel.FdStream(report_r))
        self._nursery.start_soon(self._relay_stderr, child, err_r)
        self._nursery.start_soon(self._monitor, child, arrived)
        try:
            assert proc.stdin is not None
            try:
                await proc.stdin.send_all(msgspec.msgpack.encode(spec))
                await proc.stdin.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # it died already; the monitor tells why
            with trio.move_on_after(self.spawn_timeout) as timeout:
                await arrived.wait()
            if slot:
                chan = slot[0]
                child.portal = Portal(chan, actor=actor)
                child.spawned = True
                return child
            if timeout.cancelled_caught:
                raise ActorCrashed(
                    f"actor {name!r} did not connect back within {self.spawn_timeout}s",
                    boxed_type=ActorCrashed,
                    tb_str=child.tail(),
                    src_uid=(name, uuid),
                )
            # The process exited before connecting back: it reported why, or it crashed.
            with trio.move_on_after(1.0):
                await child.report_done.wait()
                await child.stderr_done.wait()
            boot_error = child.boot_error()
            if boot_error is not None:
                raise boot_error
            raise child.crashed("before it connected back to its parent")
        finally:
            actor.forget_child(uuid)
            if not child.spawned:
                with trio.CancelScope(shield=True):
                    await self._reap(child, hard_kill=True)

    async def _relay_stderr(self, child: _Child, fd: int) -> None:
        """Forward the child's stderr to ours, keeping a tail for crash reports.

        A thread does the reading: a parent whose trio loop is busy (CPU-bound work in
        the root, a blocking call) must not stall its children, which would block as
        soon as the pipe filled while nothing read it.
        """
        try:
            await trio.to_thread.run_sync(
                _drain_stderr,
                fd,
                child.stderr_tail,
                abandon_on_cancel=True,
                limiter=self._relay_threads,
            )
        finally:
            child.stderr_done.set()

    async def _read_report(self, child: _Child, stream: trio.lowlevel.FdStream) -> None:
        """Collect the child's boot report; EOF comes once it connected back or exited."""
        try:
            while chunk := await stream.receive_some(65536):
                if len(child.report) <= _REPORT_MAX:
                    child.report += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            child.report_done.set()
            await stream.aclose()

    async def _monitor(self, child: _Child, arrived: trio.Event) -> None:
        # The one place a child is reaped. Shielded: it ends only when the process has,
        # and every way out of the nursery kills what still runs (see _reap).
        with trio.CancelScope(shield=True):
            await _exited_unreaped(child.proc)
            child.dead = True
            if child.leader:
                # While the leader is unreaped its pid cannot name another group: what
                # is left of its subtree (a grandchild it could not reap) goes now.
                try:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            child.returncode = await child.proc.wait()
        child.exited.set()
        arrived.set()  # wakes a spawner still waiting for the handshake
        if not child.spawned or child.reaping or child.oneshot:
            return
        if child.returncode != 0:
            with trio.move_on_after(1.0):
                await child.stderr_done.wait()
            raise child.crashed("unexpectedly")
        # A daemon that exited cleanly on its own (cancel_actor() by the program): clean
        # up after it now (its channel, socket files, this nursery's record of it).
        await self._reap(child)

    async def _run_oneshot(
        self, child: _Child, fn: Callable[..., Any], kwargs: dict[str, Any]
    ) -> None:
        assert child.portal is not None
        try:
            child.result_value = await child.portal.run(fn, **kwargs)
        except RemoteActorError as exc:
            child.result_error = exc
        except TransportClosed:
            if child.reaping:
                # This nursery stopped the child (cancel(), or its block failed): nothing
                # to report at the block's end; wait_for_result() says so if asked.
                child.result_consumed = True
                child.result_error = ContextCancelled(
                    f"actor {child.name!r} was cancelled by its nursery before "
                    f"{fn.__name__}() returned",
                    src_uid=(child.name, child.uuid),
                    canceller=list(self._actor.uid),
                )
            else:
                with trio.move_on_after(self.reap_grace):
                    await child.exited.wait()
                with trio.move_on_after(1.0):
                    await child.stderr_done.wait()
                child.result_error = child.crashed(f"while running {fn.__name__}()")
        except Exception as exc:  # noqa: BLE001 - kept for wait_for_result(), never lost
            child.result_error = exc
        finally:
            child.result_ready.set()
        # As upstream, the child stays up until the nursery's block ends (or the nursery
        # is cancelled): peers that looked it up meanwhile may still be calling it.
        await child.released.wait()
        await self._reap(child)

    def _release_all(self) -> None:
        """Let every finished run_in_actor child go (they wait for the block to end)."""
        for child in self._children.values():
            child.released.set()

    async def _wait_oneshots(self) -> None:
        for child in list(self._children.values()):
            if child.oneshot:
                await child.result_ready.wait()

    def _unconsumed_errors(self) -> list[BaseException]:
        return [
            c.result_error
            for c in self._children.values()
            if c.oneshot and c.result_error is not None and not c.result_consumed
        ]

    def _tighten(self, end: float, reserves: int) -> float:
        """``end`` (trio clock), or earlier when this actor must itself exit by a deadline,
        so that ``reserves`` of :data:`_RESERVE` are left after it. Its children are
        then gone, however stuck, before its parent's own escalation reaches it: a tree
        goes down within about one grace period of its root, not one per level.
        """
        deadline = self._actor.cancel_deadline
        if deadline is None:
            return end
        now = trio.current_time()
        left = max(0.0, deadline - now)
        return min(end, now + left - reserves * min(_RESERVE, left / 4))

    async def _wait_exit(self, child: _Child, end: float, reserves: int) -> None:
        """Wait until ``child`` has exited or ``end`` passed, pulling ``end`` earlier
        whenever this actor's exit deadline does (a parent's cancel or a SIGTERM may
        arrive while its children are being reaped)."""
        end = self._tighten(end, reserves)
        while not child.exited.is_set() and trio.current_time() < end:
            changed = self._actor.deadline_changed
            with trio.move_on_at(end):
                async with trio.open_nursery() as either:
                    for event in (child.exited, changed):
                        either.start_soon(_set_then_cancel, event, either.cancel_scope)
            end = self._tighten(end, reserves)

    async def _request_cancel(self, child: _Child, budget: float) -> None:
        """Ask ``child`` to cancel itself and to be gone within ``budget`` seconds."""
        assert child.portal is not None
        chan = child.portal.channel
        if chan.closed:
            return
        try:
            await chan.call("self", "cancel", {"budget": budget})
        except (TransportClosed, RemoteActorError) as exc:
            log.debug("cancel request to %r failed: %s", child.name, exc)

    async def _reap(self, child: _Child, hard_kill: bool = False) -> bool:
        """Make sure ``child`` is gone: graceful cancel, then SIGTERM, then SIGKILL.

        True if no signal was needed."""
        child.reaping = True
        if not child.exited.is_set() and not hard_kill and child.portal is not None:
            now = trio.current_time()
            end = self._tighten(now + self.reap_grace, _AFTER_GRACEFUL)
            async with trio.open_nursery() as graceful:
                graceful.start_soon(self._request_cancel, child, max(0.0, end - now))
                await self._wait_exit(child, end, _AFTER_GRACEFUL)
                graceful.cancel_scope.cancel()
        graceful_exit = child.exited.is_set()
        if not child.exited.is_set():
            # A child cancels itself on SIGTERM, in a hurry (see tractor_reg._child).
            _signal(child, signal.SIGTERM)
            await self._wait_exit(child, trio.current_time() + TERM_WAIT, _AFTER_TERM)
        if not child.exited.is_set():
            _signal(child, signal.SIGKILL)
            await child.exited.wait()
        if child.portal is not None:
            await child.portal.channel.aclose()
            aid = child.portal.channel.aid
            for addr in aid.accept_addrs:
                if isinstance(addr, UDSAddress):
                    try:
                        os.unlink(addr.path)
                    except FileNotFoundError:
                        pass
        if not (child.oneshot and child.result_error is not None and not child.result_consumed):
            # Gone and nothing left to report: a long-lived nursery must not keep a
            # record (process, portal, stderr tail) of every child it ever ran.
            self._children.pop(child.uuid, None)
        return graceful_exit


@asynccontextmanager
async def _actor_nursery(actor: Actor) -> AsyncIterator[ActorNursery]:
    with collapse_eg():
        async with trio.open_nursery() as nursery:
            an = ActorNursery(actor, nursery)
            try:
                yield an
                an._release_all()
                await an._wait_oneshots()
            finally:
                with trio.CancelScope(shield=True):
                    await an.cancel()
            errors = an._unconsumed_errors()
            if len(errors) == 1:
                raise errors[0]
            if errors:
                raise ExceptionGroup("several run_in_actor children failed", errors)  # type: ignore[type-var]


@asynccontextmanager
async def open_nursery(**root_kwargs: Any) -> AsyncIterator[ActorNursery]:
    """An :class:`ActorNursery`; opens a root actor first when none runs in this process.

    ``root_kwargs`` go to :func:`open_root_actor` when this call opens the root. Inside a
    running actor they are checked (an unknown keyword is a ``TypeError``) and otherwise
    ignored, as upstream does: the running actor's settings apply.
    """
    from ._root import open_root_actor

    actor = _state.maybe_current_actor()
    if actor is None:
        async with open_root_actor(**root_kwargs) as root, _actor_nursery(root) as an:
            yield an
        return
    unknown = sorted(set(root_kwargs) - _root_keywords(open_root_actor))
    if unknown:
        raise TypeError(f"open_nursery() got unexpected keyword arguments {unknown}")
    if root_kwargs:
        log.debug(
            "open_nursery() inside running actor %r ignores root options %s",
            actor.name,
            sorted(root_kwargs),
        )
    async with _actor_nursery(actor) as an:
        yield an


def _root_keywords(open_root: Callable[..., Any]) -> set[str]:
    return {
        p.name
        for p in inspect.signature(open_root).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
