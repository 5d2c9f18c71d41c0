"""The actor: an IPC server, a table of connected peers and an RPC dispatcher."""

from __future__ import annotations

import collections
import errno
import importlib
import inspect
import logging
import math
import os
import runpy
import secrets
import socket
import ssl
import sys
import time
import types
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import msgspec
import trio

from . import _state
from ._addr import Address, TCPAddress, UDSAddress, unwrap_address, wrap_address
from ._budget import DEFAULT_MAX_BUFFERED_BYTES, InputBudget
from ._exceptions import (
    BackendError,
    FrameTooLarge,
    HandshakeError,
    InvalidRequest,
    LimitExceeded,
    ModuleNotExposed,
    ProtocolError,
    RegistryTimeout,
    RemoteActorError,
    RPCNotAllowed,
    RuntimeBootError,
    TransportClosed,
    pack_error,
)
from ._ipc import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FRAME_DEADLINE,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_FRAME_SIZE,
    MAX_PENDING_CALLS,
    Aid,
    Channel,
    open_listener,
    open_stream,
)
from ._msg import Call, CancelCall, Error, Handshake, Return
from ._peerlog import DEFAULT_PEER_LOG_INTERVAL, PeerWarnings
from ._portal import LocalPortal, Portal
from ._security import LEASE_TOKEN_SIZE, NONCE_SIZE, Security
from ._util import collapse_eg

log = logging.getLogger("tractor_reg.actor")

#: ``Actor.main_path`` of a program run as ``python -m pkg.mod``: ``module:pkg.mod``.
MAIN_MODULE_PREFIX = "module:"

#: Calls one channel's reader holds back while its posted answers wait unread; past it
#: the reader stops reading that peer (back-pressure), for at most the frame deadline.
_HELD_CALLS_MAX = 4096
assert _HELD_CALLS_MAX > MAX_PENDING_CALLS  # a tractor_reg peer never fills it

#: Default registration lease (seconds) and renew interval: a dead actor vanishes from
#: lookups within 30 s even if nobody reports it, at one tiny RPC per 10 s per actor.
DEFAULT_LEASE_TTL = 30.0
DEFAULT_RENEW_INTERVAL = 10.0
#: How long one registry call may take before the registrar counts as unresponsive
#: (SIGSTOPped, wedged, half-open connection) and callers fail over to the next one.
DEFAULT_CALL_TIMEOUT = 10.0
#: How long a registrar that failed to answer (timeout, refused, dropped connection) is
#: skipped by lookups and registrations while another one answers; after it, the next
#: call that needs it tries it again.
DEFAULT_REGISTRY_RETRY = 5.0
#: Inbound connections one actor serves at once (each costs a file descriptor).
DEFAULT_MAX_CONNECTIONS = 4096
#: ...of which one peer host may hold (TCP: one IP address; Unix sockets: one user id).
DEFAULT_MAX_CONNECTIONS_PER_HOST = 1024
#: Calls running at once in tasks of their own (non-inline endpoints), per channel and
#: in the whole actor; more are refused with LimitExceeded.
DEFAULT_MAX_CALLS_PER_CHANNEL = 1024
DEFAULT_MAX_CALLS = 16384
#: accept() failures that mean "out of descriptors or memory for now", not a dead
#: listener; the accept loop logs them and tries again after _ACCEPT_RETRY seconds.
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_RETRY = 0.1
#: How long teardown waits for cancelled RPC tasks to finish (their actor nurseries reap
#: children on the way out) when no parent set a deadline for this actor's exit.
_CALLS_GRACE = 5.0
#: The least time teardown spends trying to unregister, even past its deadline.
_MIN_UNREGISTER = 0.25

#: Errors that mean "that peer cannot be reached / talked to right now".
CONNECT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,  # includes RegistryTimeout
    TransportClosed,
    HandshakeError,
    ProtocolError,
)
#: ...plus a registrar that answered with an error (remotely, or locally through a
#: LocalPortal when this actor is the registrar and its store is failing).
REGISTRY_ERRORS: tuple[type[Exception], ...] = (
    *CONNECT_ERRORS,
    RemoteActorError,
    BackendError,
    InvalidRequest,
)


class _HeldCalls:
    """The calls a channel's reader held back, in arrival order, while the answers it
    posted wait for the peer to read them (at most ``_HELD_CALLS_MAX``)."""

    def __init__(self) -> None:
        self._calls: collections.deque[Call] = collections.deque()
        self._added = trio.Event()
        self._taken = trio.Event()
        self.runner_started = False

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, cid: int) -> bool:
        return any(call.cid == cid for call in self._calls)

    @property
    def full(self) -> bool:
        return len(self._calls) >= _HELD_CALLS_MAX

    def add(self, call: Call) -> None:
        self._calls.append(call)
        self._added.set()
        self._added = trio.Event()

    def take(self) -> Call:
        call = self._calls.popleft()
        self._taken.set()
        self._taken = trio.Event()
        return call

    def discard(self, cid: int) -> None:
        for call in self._calls:
            if call.cid == cid:
                self._calls.remove(call)
                return

    async def wait_added(self) -> None:
        await self._added.wait()

    async def wait_taken(self) -> None:
        await self._taken.wait()


class Actor:
    """A process-level participant in an actor tree.

    Attributes:
        name, uuid, uid: identity; ``uid == (name, uuid)``.
        accept_addrs: the addresses this actor accepts connections on (after binding).
        reg_addrs: the registry addresses this actor registers with.
        enable_modules: modules whose functions peers may call.
    """

    is_registrar: ClassVar[bool] = False
    #: Methods peers may call through ``run_from_ns('self', ...)``.
    SELF_ENDPOINTS: ClassVar[frozenset[str]] = frozenset({"cancel", "ping"})
    #: Endpoints that never block: run inside the channel's message loop instead of in a
    #: task of their own (saves a task spawn and a scheduler pass per call).
    INLINE_ENDPOINTS: ClassVar[frozenset[str]] = frozenset({"ping"})

    # The public instance attributes (set in __init__; listed for readers and tools).
    name: str
    uuid: str
    pid: int
    enable_modules: list[str]
    reg_addrs: list[Address]
    accept_addrs: list[Address]
    loglevel: str | None
    lease_ttl: float
    renew_interval: float

    def __init__(
        self,
        name: str,
        *,
        uuid: str | None = None,
        enable_modules: Sequence[str] = (),
        reg_addrs: Sequence[Address] = (),
        bind_addrs: Sequence[Address] = (),
        parent_addr: Address | None = None,
        main_path: str | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        renew_interval: float | None = None,
        register_self: bool = True,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        security: Security | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        loglevel: str | None = None,
        max_connections_per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
        max_calls_per_channel: int = DEFAULT_MAX_CALLS_PER_CHANNEL,
        max_calls: int = DEFAULT_MAX_CALLS,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        frame_deadline: float = DEFAULT_FRAME_DEADLINE,
        peer_log_interval: float = DEFAULT_PEER_LOG_INTERVAL,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"actor name must be a non-empty str, got {name!r}")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be > 0")
        for what, count in (
            ("max_connections", max_connections),
            ("max_connections_per_host", max_connections_per_host),
            ("max_calls_per_channel", max_calls_per_channel),
            ("max_calls", max_calls),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{what} must be an int >= 1, got {count!r}")
        if max_buffered_bytes < max_frame_size:
            raise ValueError(
                f"max_buffered_bytes ({max_buffered_bytes}) must be at least max_frame_size "
                f"({max_frame_size}): one whole frame must fit"
            )
        if not 0 < frame_deadline < float("inf"):
            raise ValueError(f"frame_deadline must be a positive number, got {frame_deadline!r}")
        renew = lease_ttl / 3 if renew_interval is None else renew_interval
        if not 0 < renew < lease_ttl:
            raise ValueError("renew_interval must be > 0 and shorter than lease_ttl")
        self.name = name
        self.uuid = uuid or str(uuidlib.uuid4())
        self.pid = os.getpid()
        self.enable_modules = list(enable_modules)
        self.reg_addrs: list[Address] = list(reg_addrs)
        self.bind_addrs: list[Address] = list(bind_addrs)
        self.accept_addrs: list[Address] = []
        self.parent_addr = parent_addr
        self.main_path = main_path
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self.connect_timeout = connect_timeout
        self.lease_ttl = lease_ttl
        self.renew_interval = renew
        #: False for pure clients (tools) that look things up but are not discoverable.
        self.register_self = register_self
        #: Deadline for one registry call; past it the registrar counts as unresponsive.
        self.call_timeout = call_timeout
        #: Shared-secret authentication and TLS settings.
        self.security = security or Security()
        #: Inbound connections served at once; more are refused at accept.
        self.max_connections = max_connections
        #: Inbound connections one peer host may hold (see :func:`peer_host`).
        self.max_connections_per_host = max_connections_per_host
        #: Calls running in tasks of their own, per channel and in total.
        self.max_calls_per_channel = max_calls_per_channel
        self.max_calls = max_calls
        #: Seconds a started frame may take to arrive (or to go out) completely.
        self.frame_deadline = frame_deadline
        #: Large frame payloads buffered at once across every channel (bytes).
        self.input_budget = InputBudget(max_buffered_bytes)
        #: Warnings about misbehaving peers, at most one per peer host per interval.
        self.peer_warnings = PeerWarnings(log, peer_log_interval)
        self._per_host: dict[str, int] = {}
        self._spawned_calls = 0
        #: The log level this actor was started with (children inherit it).
        self.loglevel = loglevel
        self._inbound = 0

        self._modules: dict[str, types.ModuleType] = {}
        self._peers: dict[tuple[str, str], list[Channel]] = {}
        self._dialled: dict[Address, Channel] = {}
        self._dial_locks: dict[Address, trio.Lock] = {}
        self._calls: dict[Channel, dict[int, trio.CancelScope]] = {}
        self._child_waiters: dict[str, tuple[trio.Event, list[Channel]]] = {}
        self._listeners: list[trio.SocketListener] = []
        self._serve_scope = trio.CancelScope()
        self._service: trio.Nursery | None = None
        # Created up front: a cancel that arrives while booting must still end the body.
        self._root_scope = trio.CancelScope()
        self._registered_with: Address | None = None
        # The lease token that owns this actor's registration, at every registrar: made
        # here rather than taken from the first answer, so that a registration whose
        # answer was lost (cancelled in flight) can still be renewed and unregistered.
        self._lease_token = secrets.token_bytes(LEASE_TOKEN_SIZE)
        # the registrar a registration is in flight at (it may land even if cancelled)
        self._registering_at: Address | None = None
        # How often leases are renewed: renew_interval, or the same fraction of a
        # shorter lease the registrar granted (it caps what it grants).
        self._renew_every = renew
        self._lease_scope = trio.CancelScope()
        self._lease_done = trio.Event()
        self._lease_started = False
        self._registry_failing = False
        #: Registry address -> monotonic time of its latest failure (cleared on success).
        self._reg_failed_at: dict[Address, float] = {}
        #: The registrar that answered this actor's latest registry call: tried first.
        self._reg_answered: Address | None = None
        #: Seconds a failed registrar is skipped while another answers.
        self.registry_retry = DEFAULT_REGISTRY_RETRY
        self._parent_chan: Channel | None = None
        self._cancel_requested = trio.Event()
        #: When set (trio clock), the time by which this actor must have exited: the
        #: parent escalates to signals after it, so teardown fits its work before it.
        self.cancel_deadline: float | None = None
        #: Set (and replaced by a fresh event) whenever ``cancel_deadline`` moves earlier.
        self.deadline_changed = trio.Event()
        self.peer_connected = trio.Event()
        self._running_calls = 0
        self._calls_idle = trio.Event()
        self._calls_idle.set()

    # -- identity ------------------------------------------------------------------------

    @property
    def uid(self) -> tuple[str, str]:
        return (self.name, self.uuid)

    @property
    def aid(self) -> Aid:
        return Aid(self.name, self.uuid, self.pid, self.is_registrar, tuple(self.accept_addrs))

    @property
    def cancel_called(self) -> bool:
        """Whether this actor was asked to shut down (a cancel request or cancel_soon())."""
        return self._cancel_requested.is_set()

    @property
    def accept_addr(self) -> Address:
        """The first address this actor accepts connections on (upstream's primary address)."""
        if not self.accept_addrs:
            raise RuntimeError(f"actor {self.name!r} accepts no connections (yet)")
        return self.accept_addrs[0]

    @property
    def registry_addrs(self) -> list[Address]:
        """Upstream's name for :attr:`reg_addrs`."""
        return list(self.reg_addrs)

    @property
    def is_arbiter(self) -> bool:
        """Upstream's deprecated name for :attr:`is_registrar`."""
        return self.is_registrar

    def is_infected_aio(self) -> bool:
        """Always ``False``: asyncio-infected actors are a non-goal of tractor_reg."""
        return False

    def get_parent(self) -> Portal:
        """A portal to the actor that spawned this one.

        Raises ``RuntimeError`` in a root actor (it has no parent) or before this actor
        connected back to its parent.
        """
        if self._parent_chan is None:
            raise RuntimeError(f"actor {self.name!r} has no parent (it is a root actor)")
        return Portal(self._parent_chan, actor=self)

    def _hello(self, role: str = "peer") -> Handshake:
        secret = self.security.secret
        return Handshake(
            name=self.name,
            uuid=self.uuid,
            pid=self.pid,
            is_registrar=self.is_registrar,
            accept_addrs=[unwrap_address(a) for a in self.accept_addrs],
            role=role,
            nonce=os.urandom(NONCE_SIZE) if secret is not None else b"",
            auth=secret is not None,
        )

    async def secure_client_stream(self, stream: trio.abc.Stream, addr: Address) -> trio.abc.Stream:
        """Wrap a dialled TCP stream in TLS when configured (UDS stays plain)."""
        if self.security.tls is None or not isinstance(addr, TCPAddress):
            return stream
        return trio.SSLStream(stream, self.security.client_ctx, server_hostname=addr.host)

    async def connect_channel(self, addr: Address, timeout: float, role: str = "peer") -> Channel:
        """Dial ``addr``, wrap TLS if configured, and complete the (authenticated)
        handshake within ``timeout``; the caller owns the returned channel."""
        stream = await open_stream(addr, min(timeout, self.connect_timeout))
        stream = await self.secure_client_stream(stream, addr)
        chan = self._channel(stream, addr, role)
        shook = False
        try:
            await chan.handshake(self._hello(role), timeout, self.security.secret)
            shook = True
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            raise HandshakeError(f"TLS with {addr} failed: {exc}") from exc
        finally:
            if not shook:  # failed or cancelled mid-handshake: never leak the socket
                await chan.aclose()
        return chan

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.uuid[:8]} addrs={self.accept_addrs}>"

    # -- modules -------------------------------------------------------------------------

    def _load_modules(self) -> None:
        for modname in self.enable_modules:
            if modname in self._modules:
                continue
            if modname in ("__main__", "__mp_main__"):
                self._modules["__main__"] = self._main_module()
                self._modules["__mp_main__"] = self._modules["__main__"]
                continue
            self._modules[modname] = importlib.import_module(modname)

    def _main_module(self) -> types.ModuleType:
        """The root program's script, loaded under ``__mp_main__`` so its guard does not run.

        A root actor enables its own ``__main__``. A child loads the script its parent
        passed on; a child told not to inherit it (no ``main_path``) exposes an empty
        module, never the ``tractor_reg._child`` entry point that is its real ``__main__``.
        """
        if self.main_path is None:
            if self.parent_addr is not None:
                return types.ModuleType("__mp_main__")
            main = sys.modules.get("__main__")
            if main is None:
                raise RuntimeBootError("no __main__ module to enable")
            return main
        if self.main_path.startswith(MAIN_MODULE_PREFIX):
            # A program run as ``python -m pkg.mod``: imported by name, as a module of its
            # package (its ``if __name__ == "__main__"`` block does not run).
            module = importlib.import_module(self.main_path[len(MAIN_MODULE_PREFIX) :])
            sys.modules["__mp_main__"] = module
            return module
        existing = sys.modules.get("__mp_main__")
        if existing is not None and getattr(existing, "__file__", None) == self.main_path:
            return existing
        module = types.ModuleType("__mp_main__")
        module.__file__ = self.main_path
        sys.modules["__mp_main__"] = module
        namespace = runpy.run_path(self.main_path, run_name="__mp_main__")
        module.__dict__.update(namespace)
        return module

    def resolve_rpc(self, ns: str, func: str) -> Callable[..., Any]:
        """The callable a peer's ``Call(ns, func)`` names; :class:`ModuleNotExposed` for a
        module that is not enabled, :class:`RPCNotAllowed` for anything else refused."""
        if ns == "self":
            if func not in self.SELF_ENDPOINTS:
                raise RPCNotAllowed(
                    f"{type(self).__name__} {self.name!r} exposes no endpoint {func!r}; "
                    f"it exposes {sorted(self.SELF_ENDPOINTS)}"
                )
            method: Callable[..., Any] = getattr(self, func)
            return method
        module = self._modules.get(ns)
        if module is None:
            raise ModuleNotExposed(
                f"module {ns!r} is not enabled here (enable_modules={self.enable_modules})",
                name=ns,
            )
        fn = getattr(module, func, None)
        # Only Python functions *defined* in the enabled module: a name merely imported
        # into it (``from os import system``) must not become remotely callable.
        if not inspect.isfunction(fn) or fn.__module__ not in (module.__name__, ns):
            if ns in ("__main__", "__mp_main__") and self._without_script():
                raise RPCNotAllowed(
                    f"{ns}.{func}: actor {self.name!r} did not load its parent's script "
                    "(it was started with inherit_parent_main=False, or the parent program "
                    "is not a script file)"
                )
            raise RPCNotAllowed(f"{ns}.{func} is not a function defined in an enabled module")
        return fn

    def _without_script(self) -> bool:
        """A child actor that has no parent script loaded as its ``__main__``."""
        return self.parent_addr is not None and self.main_path is None

    # -- self endpoints ------------------------------------------------------------------

    async def cancel(self, budget: float | None = None) -> bool:
        """Shut this actor down (answered first, then the actor winds down).

        ``budget`` is how many seconds the caller waits for this actor to exit before it
        escalates to signals; teardown (this actor's own children included) fits in it.
        Only the parent that spawned this actor may ask (or the actor itself, locally); a
        root actor is stopped by its own program or by a signal, never by a peer.
        """
        caller = _state.current_channel.get()
        if caller is not None:
            parent = self._parent_chan.aid if self._parent_chan is not None else None
            if parent is None or caller.aid.uid != parent.uid:
                raise RPCNotAllowed(
                    f"only the parent of {self.name!r} may cancel it"
                    + ("" if parent is not None else " (it is a root actor: it has none)")
                )
        if budget is not None:
            if (
                isinstance(budget, bool)
                or not isinstance(budget, int | float)
                or not 0 <= budget < float("inf")
            ):
                raise ValueError(f"budget must be a number of seconds >= 0, got {budget!r}")
            self.limit_exit(budget)
        return True

    async def ping(self) -> list[str]:
        return [self.name, self.uuid]

    def cancel_soon(self, budget: float | None = None) -> None:
        """Begin shutting this actor down; returns immediately.

        With ``budget``, the actor must be gone within that many seconds (see
        :meth:`limit_exit`).
        """
        if budget is not None:
            self.limit_exit(budget)
        self._cancel_requested.set()
        self._root_scope.cancel()

    def limit_exit(self, budget: float) -> None:
        """Require this actor to exit within ``budget`` seconds from now; an earlier
        deadline already set stays."""
        deadline = trio.current_time() + budget
        if self.cancel_deadline is None or deadline < self.cancel_deadline:
            self.cancel_deadline = deadline
            self.deadline_changed.set()
            self.deadline_changed = trio.Event()

    def exit_budget(self, default: float) -> float:
        """Seconds left before this actor must have exited, or ``default`` if no
        deadline was set."""
        if self.cancel_deadline is None:
            return default
        return max(0.0, self.cancel_deadline - trio.current_time())

    # -- lifecycle -----------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Actor]:
        """Serve IPC, register, and yield; tear everything down on exit.

        The body runs inside a cancel scope that :meth:`cancel_soon` cancels, so a remote
        ``cancel_actor()`` ends the body quietly.
        """
        if _state.maybe_current_actor() is not None:
            raise RuntimeBootError(
                f"an actor ({_state.maybe_current_actor()!r}) already runs in this process"
            )
        self._load_modules()
        _state._set_current_actor(self)
        try:
            with collapse_eg():
                async with trio.open_nursery() as service:
                    self._service = service
                    try:
                        await self._bind()
                        if self._listeners:
                            service.start_soon(self._serve_listeners)
                        await self._after_bind(service)
                        with self._root_scope:
                            yield self
                    finally:
                        with trio.CancelScope(shield=True):
                            await self._cancel_calls()
                            await self._teardown()
                        service.cancel_scope.cancel()
        finally:
            _state._set_current_actor(None)

    async def _bind(self) -> None:
        try:
            for addr in self.bind_addrs:
                listener, bound = await open_listener(addr)
                self._listeners.append(listener)
                self.accept_addrs.append(bound)
        except OSError:
            await self._close_listeners()
            raise

    async def _serve_listeners(self) -> None:
        assert self._service is not None
        # Own scope: teardown must stop accepting before it closes the listening sockets.
        with self._serve_scope:
            async with trio.open_nursery() as accepting:
                for listener in self._listeners:
                    accepting.start_soon(self._accept_loop, listener)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        # Not trio.serve_listeners: that wraps every connection in one more task frame
        # and a forced close, and starts the handler before anything is said.
        assert self._service is not None
        service = self._service
        while True:
            try:
                # SocketListener.accept skips connections that died before they were
                # accepted (ECONNABORTED and the like), as serve_listeners did.
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("%r: cannot accept (%s); retrying shortly", self, exc)
                await trio.sleep(_ACCEPT_RETRY)
                continue
            secured: trio.abc.Stream = stream
            if stream.socket.family != socket.AF_UNIX and self.security.tls is not None:
                secured = trio.SSLStream(stream, self.security.server_ctx, server_side=True)
            plain = secured is stream
            chan = self._channel(secured, None, accepted=True)
            host = chan.host
            if self._inbound >= self.max_connections:
                service.start_soon(self._refuse_inbound, chan, plain, host, None)
                continue
            if self._per_host.get(host, 0) >= self.max_connections_per_host:
                service.start_soon(self._refuse_inbound, chan, plain, host, host)
                continue
            self._inbound += 1
            self._per_host[host] = self._per_host.get(host, 0) + 1
            handed_over = False
            try:
                hello: Handshake | None = None
                if plain:
                    # Answer the dialler's handshake before this connection's task even
                    # starts (one scheduler pass sooner). A small frame on a fresh socket
                    # goes straight into its send buffer: this never waits for the peer.
                    hello = self._hello()
                    await chan.send(hello)
                service.start_soon(self._handle_inbound, chan, hello, plain, host)
                handed_over = True
            except TransportClosed as exc:
                log.info("%r: a dialler hung up before the handshake: %s", self, exc)
            finally:
                if not handed_over:
                    self._leave(host)
                    with trio.CancelScope(shield=True):
                        await chan.aclose()

    async def _after_bind(self, service: trio.Nursery) -> None:
        """Hook run after binding, before the body: register and start lease renewal."""
        # Register before telling the parent we are up, so that a portal returned by
        # start_actor() always points at an actor that lookups already find.
        if self.reg_addrs and self.register_self:
            await self._register()
            self._lease_started = True
            service.start_soon(self._lease_loop)
        if self.parent_addr is not None:
            self._parent_chan = await self.dial(self.parent_addr, cache=False, role="child")
            service.start_soon(self._watch_parent, self._parent_chan)

    async def _cancel_calls(self) -> None:
        """Cancel every RPC task and wait (within the exit budget) until they are done.

        Runs before the rest of teardown: an RPC task that opened an actor nursery reaps
        its children on the way out, while this actor's channels still work and its
        deadline leaves them time.
        """
        for scopes in self._calls.values():
            for scope in scopes.values():
                scope.cancel()
        with trio.move_on_after(self.exit_budget(_CALLS_GRACE)):
            await self._calls_idle.wait()

    async def _teardown(self) -> None:
        # Stop renewing first: a renewal or re-registration still running (or starting)
        # after the unregister would register this dying actor again.
        self._lease_scope.cancel()
        if self._lease_started:
            await self._lease_done.wait()
        limit = max(1.0, self.connect_timeout)
        with trio.move_on_after(max(_MIN_UNREGISTER, min(limit, self.exit_budget(limit)))):
            await self._unregister()
        await self._close_listeners()
        for chans in list(self._peers.values()):
            for chan in list(chans):
                await chan.aclose()
        for chan in list(self._dialled.values()):
            await chan.aclose()

    async def _close_listeners(self) -> None:
        self._serve_scope.cancel()
        for listener in self._listeners:
            await listener.aclose()
        self._listeners.clear()
        for addr in self.accept_addrs:
            if isinstance(addr, UDSAddress):
                try:
                    os.unlink(addr.path)
                except FileNotFoundError:
                    pass

    async def _watch_parent(self, chan: Channel) -> None:
        """A child whose parent vanished shuts down instead of lingering as an orphan."""
        await chan.closed_event.wait()
        if not self._cancel_requested.is_set():
            log.warning("%r: parent connection lost; shutting down", self)
        self.cancel_soon()

    # -- registration and leases ---------------------------------------------------------

    def _registry_portal_local(self, addr: Address) -> LocalPortal | None:
        if self.is_registrar and addr in self.accept_addrs:
            return LocalPortal(self)
        return None

    async def registry_portal(self, addr: Address) -> Portal | LocalPortal:
        local = self._registry_portal_local(addr)
        if local is not None:
            return local
        chan = await self.dial(addr)
        return Portal(chan, actor=self)

    async def registry_call(
        self, reg: Address, func: str, *, deadline: float | None = None, **kwargs: Any
    ) -> Any:
        """Call registrar endpoint ``func`` at ``reg`` with a deadline.

        A registrar that does not answer in time raises :class:`RegistryTimeout` and its
        cached connection is dropped, so the next call dials afresh.
        """
        limit = self.call_timeout if deadline is None else deadline
        try:
            with trio.move_on_after(limit):
                # The deadline covers dialling too: a stopped registrar still completes
                # TCP connects (the kernel accepts) but never answers the handshake.
                portal = await self.registry_portal(reg)
                result = await portal.run_from_ns("self", func, **kwargs)
                self._reg_failed_at.pop(reg, None)
                self._reg_answered = reg
                return result
        except CONNECT_ERRORS:
            # Unreachable or unresponsive. A registrar that answered with an error
            # (its store is busy, a bad request) is reachable: lookups may still use it.
            self.registry_failed(reg)
            raise
        self.registry_failed(reg)
        chan = self._dialled.pop(reg, None)
        if chan is not None:
            await chan.aclose()
        raise RegistryTimeout(f"registrar {reg} did not answer {func}() within {limit:g}s")

    async def _register(self) -> bool:
        """Register every accept address in one call at the first registrar that answers."""
        addrs = [unwrap_address(a) for a in self.accept_addrs]
        first, fallback = self.registry_order()
        for reg in first + fallback:
            self._registering_at = reg
            try:
                granted = await self.registry_call(
                    reg,
                    "register_actor",
                    deadline=min(self.call_timeout, self.renew_interval),
                    uid=list(self.uid),
                    addr=addrs,
                    ttl=self.lease_ttl,
                    token=self._lease_token,
                )
            except REGISTRY_ERRORS as exc:
                self._log_registry_failure("registering at %s failed: %s", reg, exc)
                continue
            self._follow_granted_lease(reg, granted)
            self._registered_with = reg
            if self._registry_failing:
                log.warning("%r: registered at %s again", self, reg)
            self._registry_failing = False
            return True
        self._registered_with = None
        log.log(
            logging.DEBUG if self._registry_failing else logging.WARNING,
            "%r: no registrar reachable at %s; will retry",
            self,
            self.reg_addrs,
        )
        self._registry_failing = True
        return False

    def _follow_granted_lease(self, reg: Address, reply: object) -> None:
        """Renew often enough for the lease ``register_actor`` granted (``reply["ttl"]``)."""
        ttl = reply.get("ttl") if isinstance(reply, dict) else None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            return
        every = self.renew_interval * min(1.0, ttl / self.lease_ttl)
        if every != self._renew_every and ttl < self.lease_ttl:
            log.info(
                "%r: registrar %s granted a %gs lease (asked %gs); renewing every %gs",
                self,
                reg,
                ttl,
                self.lease_ttl,
                every,
            )
        self._renew_every = every

    def _log_registry_failure(self, fmt: str, reg: Address, exc: Exception) -> None:
        """One WARNING per outage (then DEBUG), without remote tracebacks: an actor
        retrying through a long outage must not flood its log."""
        brief = (
            f"{exc.type_name}: {exc.remote_message}"
            if isinstance(exc, RemoteActorError)
            else f"{type(exc).__name__}: {exc}"
        )
        level = logging.DEBUG if self._registry_failing else logging.WARNING
        log.log(level, "%r: " + fmt, self, reg, brief)
        self._registry_failing = True

    def registry_failed(self, addr: Address) -> None:
        """Count the registrar at ``addr`` as failed now: lookups and registrations skip
        it for :attr:`registry_retry` seconds while another registrar answers."""
        self._reg_failed_at[addr] = time.monotonic()
        if self._reg_answered == addr:
            self._reg_answered = None

    def registry_order(
        self, addrs: Sequence[Address] | None = None
    ) -> tuple[list[Address], list[Address]]:
        """Registrars to ask, as ``(first, fallback)``.

        ``first``: the one that answered last, then the others in the given order (by
        default :attr:`reg_addrs`), leaving out those that failed within the last
        :attr:`registry_retry` seconds. ``fallback``: those, oldest failure first; a
        caller asks them only when nobody in ``first`` answered.
        """
        order = list(self.reg_addrs if addrs is None else addrs)
        if self._reg_answered in order:
            order.remove(self._reg_answered)
            order.insert(0, self._reg_answered)
        failed = self._reg_failed_at
        since = time.monotonic() - self.registry_retry
        recent = {a for a in order if failed.get(a, -math.inf) > since}
        first = [a for a in order if a not in recent]
        fallback = sorted(recent, key=lambda a: failed[a])
        return first, fallback

    async def _lease_loop(self) -> None:
        try:
            with self._lease_scope:
                await self._renew_forever()
        finally:
            self._lease_done.set()

    async def _renew_forever(self) -> None:
        while True:
            await trio.sleep(self._renew_every)
            reg = self._registered_with
            if reg is None:
                await self._register()
                continue
            try:
                # Never wait on a hung registrar past the next renewal: the failover
                # must happen while the lease still holds.
                known = await self.registry_call(
                    reg,
                    "renew_lease",
                    deadline=min(self.call_timeout, self._renew_every),
                    uid=list(self.uid),
                    token=self._lease_token,
                    ttl=self.lease_ttl,
                )
            except REGISTRY_ERRORS as exc:
                self._log_registry_failure(
                    "lease renewal at %s failed (%s); failing over", reg, exc
                )
                self._registered_with = None
                await self._register()
                continue
            if not known:
                # The registrar lost us (restart of an in-memory store, expiry): heal.
                log.info("%r: registrar %s forgot us; re-registering", self, reg)
                await self._register()

    async def _unregister(self) -> None:
        # Where we registered, or where a (possibly cancelled) registration was sent.
        reg = self._registered_with or self._registering_at
        if reg is None:
            return
        self._registered_with = self._registering_at = None
        try:
            await self.registry_call(
                reg, "unregister_actor", uid=list(self.uid), token=self._lease_token
            )
        except REGISTRY_ERRORS as exc:
            log.debug("%r: unregister at %s failed: %s", self, reg, exc)

    # -- connections ---------------------------------------------------------------------

    async def dial(
        self, addr: Address, *, cache: bool = True, role: str = "peer", lazy: bool = False
    ) -> Channel:
        """Connect and handshake with the actor at ``addr``; cached per address by default.

        The channel's messages are served by this actor (calls both ways work).
        """
        addr = wrap_address(addr)
        if cache:
            chan = self._dialled.get(addr)
            if chan is not None and not chan.closed:
                return chan
            lock = self._dial_locks.setdefault(addr, trio.Lock())
            async with lock:
                chan = self._dialled.get(addr)
                if chan is not None and not chan.closed:
                    return chan
                chan = await self._dial_new(addr)
                self._dialled[addr] = chan
                return chan
        return await self._dial_new(addr, role, lazy)

    async def _dial_new(self, addr: Address, role: str = "peer", lazy: bool = False) -> Channel:
        assert self._service is not None, "actor is not running"
        chan = await self.connect_channel(addr, self.handshake_timeout, role)
        service = self._service
        if lazy:
            # Short-lived lookup connections often make no call at all: only start
            # serving the channel (reader task, peer table) when it is first used.
            chan.on_first_call = lambda: service.start_soon(self._serve_channel, chan)
        else:
            service.start_soon(self._serve_channel, chan)
        return chan

    def _channel(
        self,
        stream: trio.abc.Stream,
        raddr: Address | None,
        role: str = "peer",
        accepted: bool = False,
    ) -> Channel:
        return Channel(
            stream,
            raddr=raddr,
            accepted=accepted,
            max_frame_size=self.max_frame_size,
            role=role,
            frame_deadline=self.frame_deadline,
            budget=self.input_budget,
        )

    def _leave(self, host: str) -> None:
        """An inbound connection from ``host`` ended: free its slots."""
        self._inbound -= 1
        left = self._per_host[host] - 1
        if left:
            self._per_host[host] = left
        else:
            del self._per_host[host]

    async def _refuse_inbound(
        self, chan: Channel, plain: bool, host: str, over_host: str | None
    ) -> None:
        try:
            if over_host is None:
                why = f"too many connections (max {self.max_connections})"
            else:
                why = (
                    f"too many connections from {over_host} "
                    f"(max {self.max_connections_per_host} per host)"
                )
            self.peer_warnings.warn(host, "%r: refusing a connection from %s: %s", self, host, why)
            if plain:
                await self._send_channel_error(chan, LimitExceeded(why))
        finally:
            if not plain:
                # Refusing must not cost a TLS handshake with the refused peer.
                await trio.aclose_forcefully(chan.stream)
            await chan.aclose()

    async def _handle_inbound(
        self, chan: Channel, hello: Handshake | None, plain: bool, host: str
    ) -> None:
        """Serve one accepted connection (it holds a slot of ``max_connections`` and one
        of its host's ``max_connections_per_host``)."""
        try:
            if await self._accept_handshake(chan, hello, plain, host):
                await self._serve_channel(chan)
        finally:
            self._leave(host)
            # Every way out (refusal, failure, teardown's cancellation) closes the socket.
            with trio.CancelScope(shield=True):
                await chan.aclose()

    async def _accept_handshake(
        self, chan: Channel, hello: Handshake | None, plain: bool, host: str
    ) -> bool:
        """Run an inbound connection's handshake; False (logged, peer told) if refused.

        ``hello`` is this side's handshake when it already went out."""
        try:
            await chan.handshake(
                hello or self._hello(),
                self.handshake_timeout,
                self.security.secret,
                sent=hello is not None,
            )
        except (ProtocolError, TransportClosed, OSError, trio.BrokenResourceError) as exc:
            self.peer_warnings.warn(host, "%r: refused a connection from %s: %s", self, host, exc)
            if plain or chan.handshaken:
                await self._send_channel_error(chan, exc)
            return False
        except ssl.SSLError as exc:
            self.peer_warnings.warn(
                host, "%r: refused a TLS connection from %s: %s", self, host, exc
            )
            return False
        except Exception:
            # Last line of defence: one peer's handshake never takes the actor down.
            log.exception("%r: handshake with a new peer failed unexpectedly", self)
            return False
        return True

    async def _send_channel_error(self, chan: Channel, exc: BaseException) -> None:
        """Tell a misbehaving peer why it is being dropped (best effort, bounded)."""
        with trio.move_on_after(1.0):
            try:
                await chan.send(pack_error(exc, uid=self.uid, tb_str=""))
            except TransportClosed:
                pass

    def _add_peer(self, chan: Channel) -> None:
        self._peers.setdefault(chan.aid.uid, []).append(chan)
        # Only the connection a child opens to announce itself (after it registered)
        # counts as its arrival; its registry connection may reach us first.
        waiter = self._child_waiters.get(chan.aid.uuid) if chan.aid.role == "child" else None
        if waiter is not None and not waiter[0].is_set():
            waiter[1].append(chan)
            waiter[0].set()

    def _remove_peer(self, chan: Channel) -> None:
        chans = self._peers.get(chan.aid.uid)
        if chans is not None:
            if chan in chans:
                chans.remove(chan)
            if not chans:
                del self._peers[chan.aid.uid]
        if chan.raddr is not None and self._dialled.get(chan.raddr) is chan:
            del self._dialled[chan.raddr]

    @staticmethod
    def _reusable(chan: Channel) -> bool:
        """A live channel that a lookup may hand out: not one that a lookup block (of
        this actor, or of the peer that dialled it) opened and will close when it ends."""
        return not chan.closed and chan.role != "lookup" and chan.aid.role != "lookup"

    def get_peer_by_name(self, name: str) -> Channel | None:
        """The most recently connected reusable channel to an actor called ``name``."""
        for chans in reversed(list(self._peers.values())):
            for chan in reversed(chans):
                if chan.aid.name == name and self._reusable(chan):
                    return chan
        return None

    def peers_by_name(self, name: str) -> list[Channel]:
        found = []
        for chans in self._peers.values():
            live = [c for c in chans if self._reusable(c)]
            if live and live[-1].aid.name == name:
                found.append(live[-1])
        return found

    async def _serve_channel(self, chan: Channel) -> None:
        self._add_peer(chan)
        self._calls[chan] = {}
        try:
            async with trio.open_nursery() as calls:
                await self._message_loop(chan, calls)
                calls.cancel_scope.cancel()
        except Exception:
            # Last line of defence: whatever one peer triggers costs it its channel only,
            # never the actor's service nursery (and with it every other peer).
            log.exception("%r: channel %r failed; dropping it", self, chan)
        finally:
            self._calls.pop(chan, None)
            self._remove_peer(chan)
            with trio.CancelScope(shield=True):
                await chan.aclose()

    def _violation(self, chan: Channel, exc: Exception) -> None:
        self.peer_warnings.warn(chan.host, "%r: protocol violation from %r: %s", self, chan, exc)

    async def _message_loop(self, chan: Channel, calls: trio.Nursery) -> None:
        # The loop is the channel's reader: it never waits for a send to go out (answers
        # are posted), so that both ends of a channel always keep reading. While the
        # answers it posted pile up unread (the peer does not read, or both ends flood
        # each other), calls are held back in order instead, up to _HELD_CALLS_MAX.
        scopes = self._calls[chan]
        held = _HeldCalls()
        _state.current_channel.set(chan)  # for inline endpoints; tasks inherit it too
        while True:
            try:
                msg = await chan.next_inbound()
            except TransportClosed:
                return
            except ProtocolError as exc:
                self._violation(chan, exc)
                await self._send_channel_error(chan, exc)
                return
            if isinstance(msg, Call):
                if msg.cid <= 0 or msg.cid in scopes or msg.cid in held:
                    violation = ProtocolError(f"call id {msg.cid} is not a fresh positive id")
                    self._violation(chan, violation)
                    await self._send_channel_error(chan, violation)
                    return
                if held or chan.outbox_full:
                    if held.full:
                        # Back-pressure: stop reading until a held call starts. If none
                        # does within the frame deadline, both ends wait on each other
                        # (or the peer never reads): drop the channel, loudly.
                        with trio.move_on_after(self.frame_deadline) as stuck:
                            await held.wait_taken()
                        if stuck.cancelled_caught:
                            self.peer_warnings.warn(
                                chan.host,
                                "%r: dropping %r: %d calls held back for %gs while it did "
                                "not read the answers already sent",
                                self,
                                chan,
                                len(held),
                                self.frame_deadline,
                            )
                            return
                    if not held.runner_started:
                        # Started on first need: most channels never hold a call back.
                        held.runner_started = True
                        calls.start_soon(self._run_held_calls, chan, held, calls)
                    held.add(msg)
                    continue
                await self._dispatch_call(chan, msg, calls)
            elif isinstance(msg, Return):
                chan.deliver(msg)
            elif isinstance(msg, Error):
                if msg.cid == 0:
                    self.peer_warnings.warn(
                        chan.host,
                        "%r: peer %r reports: %s: %s",
                        self,
                        chan,
                        msg.type_name,
                        msg.message,
                    )
                else:
                    chan.deliver(msg)
            elif isinstance(msg, CancelCall):
                target = scopes.get(msg.cid)
                if target is not None:
                    target.cancel()
                else:
                    held.discard(msg.cid)  # not started yet: it never will be
            else:
                violation = ProtocolError(
                    f"unexpected {type(msg).__name__} frame after the handshake"
                )
                self._violation(chan, violation)
                await self._send_channel_error(chan, violation)
                return

    async def _run_held_calls(self, chan: Channel, held: _HeldCalls, calls: trio.Nursery) -> None:
        """Start the calls the reader held back, in order, as the peer reads answers."""
        while True:
            if not held:
                await held.wait_added()
                continue
            await chan.wait_outbox_room()
            if chan.closed:
                return
            while held and not chan.outbox_full:
                await self._dispatch_call(chan, held.take(), calls)

    async def _dispatch_call(self, chan: Channel, msg: Call, calls: trio.Nursery) -> None:
        """Answer an inline call at once, refuse one over the limits, or start it."""
        scopes = self._calls[chan]
        if msg.ns == "self" and msg.func in self.INLINE_ENDPOINTS:
            await self._run_inline(chan, msg, calls)
            return
        if len(scopes) >= self.max_calls_per_channel or self._spawned_calls >= self.max_calls:
            self._refuse_call(chan, msg, len(scopes), calls)
            return
        scope = trio.CancelScope()
        scopes[msg.cid] = scope
        self._spawned_calls += 1
        calls.start_soon(self._run_call, chan, msg, scope)

    def _refuse_call(self, chan: Channel, call: Call, running: int, calls: trio.Nursery) -> None:
        """Answer a call over the concurrency limits with LimitExceeded (the channel
        stays open; the calls already running go on)."""
        if running >= self.max_calls_per_channel:
            why = f"{running} calls already run for this channel (max_calls_per_channel)"
        else:
            why = f"{self._spawned_calls} calls already run in this actor (max_calls)"
        self.peer_warnings.warn(
            chan.host, "%r: refusing %s.%s from %r: %s", self, call.ns, call.func, chan, why
        )
        reply = self._error_reply(call.cid, LimitExceeded(f"call refused: {why}"))
        chan.post(reply, calls)

    async def _run_call(self, chan: Channel, call: Call, scope: trio.CancelScope) -> None:
        _state.current_channel.set(chan)
        reply: Return | Error | None = None
        if self._running_calls == 0:
            self._calls_idle = trio.Event()
        self._running_calls += 1
        try:
            with scope:
                try:
                    func = self.resolve_rpc(call.ns, call.func)
                    result = func(**call.kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                    reply = Return(cid=call.cid, value=result)
                except Exception as exc:  # noqa: BLE001 - boxed and sent to the caller
                    reply = self._error_reply(call.cid, exc)
            if reply is None:
                return  # cancelled by the caller or by channel teardown: nobody waits
            await self._send_reply(chan, call.cid, reply)
        finally:
            self._calls.get(chan, {}).pop(call.cid, None)
            self._spawned_calls -= 1
            self._running_calls -= 1
            if self._running_calls == 0:
                self._calls_idle.set()
        # Only an accepted request cancels: a refused one (not the parent, a bad budget)
        # was answered with an error and changes nothing.
        if call.ns == "self" and call.func == "cancel" and isinstance(reply, Return):
            self.cancel_soon()

    async def _run_inline(self, chan: Channel, call: Call, calls: trio.Nursery) -> None:
        """Serve a non-blocking ``self`` endpoint right in the message loop (hot path);
        its answer is posted, never awaited on the wire."""
        reply: Return | Error
        try:
            result = getattr(self, call.func)(**call.kwargs)
            if inspect.isawaitable(result):
                result = await result
            reply = Return(cid=call.cid, value=result)
        except Exception as exc:  # noqa: BLE001 - boxed and sent to the caller
            reply = self._error_reply(call.cid, exc)
        try:
            chan.post(reply, calls)
        except (TypeError, msgspec.EncodeError, FrameTooLarge) as exc:
            chan.post(self._error_reply(call.cid, exc, "return value not sent: "), calls)

    async def _send_reply(self, chan: Channel, cid: int, reply: Return | Error) -> None:
        """Send a call's answer; a return value that cannot be encoded goes back as an
        error instead. A closed channel means nobody is waiting for it."""
        try:
            try:
                await chan.send(reply)
            except (TypeError, msgspec.EncodeError, FrameTooLarge) as exc:
                await chan.send(self._error_reply(cid, exc, "return value not sent: "))
        except TransportClosed:
            pass

    def _error_reply(self, cid: int, exc: Exception, prefix: str = "") -> Error:
        return pack_error(exc, cid=cid, uid=self.uid, prefix=prefix)

    # -- children ------------------------------------------------------------------------

    def expect_child(self, uuid: str) -> tuple[trio.Event, list[Channel]]:
        waiter: tuple[trio.Event, list[Channel]] = (trio.Event(), [])
        self._child_waiters[uuid] = waiter
        return waiter

    def forget_child(self, uuid: str) -> None:
        self._child_waiters.pop(uuid, None)
