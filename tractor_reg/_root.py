"""``open_root_actor``: boot this process's actor and decide who the registrar is."""

from __future__ import annotations

import errno
import importlib
import logging
import math
import os
import ssl
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from . import _state
from ._actor import (
    CONNECT_ERRORS,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_LEASE_TTL,
    DEFAULT_MAX_CALLS,
    DEFAULT_MAX_CALLS_PER_CHANNEL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
    Actor,
)
from ._addr import (
    Address,
    AddressLike,
    TCPAddress,
    UDSAddress,
    default_registry_addr,
    is_address_pair,
    is_local_host,
    parse_address,
    runtime_dir,
    unwrap_address,
    wrap_address,
)
from ._budget import DEFAULT_MAX_BUFFERED_BYTES
from ._exceptions import (
    AuthenticationError,
    InvalidArgument,
    RegistryUnavailable,
    RuntimeBootError,
)
from ._ipc import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FRAME_DEADLINE,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_FRAME_SIZE,
    Channel,
    open_stream,
)
from ._log import env_loglevel, setup_logging
from ._msg import Handshake
from ._options import (
    check_non_goal_flags,
    check_start_method,
    merge_bind_addrs,
    module_list,
    transport_list,
)
from ._peerlog import DEFAULT_PEER_LOG_INTERVAL
from ._registrar import DEFAULT_PROBE_TIMEOUT, DEFAULT_PURGE_INTERVAL, Registrar, RegistryLimits
from ._security import NONCE_SIZE, Security, TLSConfig
from ._sigterm import root_sigterm
from ._util import collapse_eg
from .backends import RegistryBackend, open_backend, opened_backend

log = logging.getLogger("tractor_reg.root")

ENV_BACKEND = "TRACTOR_REG_BACKEND"
ENV_REGISTRY_ADDRS = "TRACTOR_REG_REGISTRY_ADDRS"
DEFAULT_BACKEND_URL = "memory://"
#: A root actor's name unless given one, registrar or not (as upstream).
DEFAULT_ROOT_NAME = "root"

#: What a boot probe found at a registry address: nothing listening ("absent"), a
#: registrar, something that answered but is not one ("occupied"), or something that
#: took the connection (or never completed it) and said nothing within the deadline
#: ("unresponsive": a stopped or overloaded registrar, a half-open peer, another program
#: that waits for its client to speak first).
Probe = Literal["absent", "registrar", "occupied", "unresponsive"]

#: Once a registrar has answered, how long the boot still waits for the other addresses
#: (never past ``handshake_timeout``): a silent address must not delay the join by a
#: whole handshake deadline; one that answers within this is still classified.
BOOT_GRACE = 0.25

_PROBE_FAILURES: tuple[type[Exception], ...] = (
    *CONNECT_ERRORS,
    trio.BrokenResourceError,
    ssl.SSLError,
)


@dataclass
class RuntimeConfig:
    """Settings a root hands down to every actor it spawns."""

    enable_transports: list[str]
    loglevel: str | None = None
    lease_ttl: float = DEFAULT_LEASE_TTL
    renew_interval: float | None = None
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    extra: dict[str, Any] = field(default_factory=dict)


def env_registry_addrs() -> list[Address] | None:
    raw = os.environ.get(ENV_REGISTRY_ADDRS, "").strip()
    if not raw:
        return None
    return [parse_address(part.strip()) for part in raw.split(",") if part.strip()]


def resolve_registry_addrs(
    registry_addrs: Sequence[AddressLike] | None, enable_transports: Sequence[str] | None
) -> tuple[list[Address], list[str]]:
    """Registry addresses and enabled transports after defaults and validation."""
    transports = [] if enable_transports is None else transport_list(enable_transports)
    source = "registry address"
    if registry_addrs is None:
        addrs = env_registry_addrs()
        if addrs is None:
            addrs = [default_registry_addr(t) for t in (transports or ["tcp"])]
        else:
            source = f"${ENV_REGISTRY_ADDRS} address"
    else:
        if isinstance(registry_addrs, str) or (
            isinstance(registry_addrs, tuple) and is_address_pair(registry_addrs)
        ):
            raise TypeError(
                "registry_addrs must be a list of addresses, e.g. [('127.0.0.1', 1616)]"
            )
        addrs = [wrap_address(a) for a in registry_addrs]
        if not addrs:
            raise ValueError("registry_addrs must contain at least one address")
    if not transports:
        transports = list(dict.fromkeys(a.transport for a in addrs))
    for addr in addrs:
        if addr.transport not in transports:
            raise InvalidArgument(
                f"{source} {addr} uses transport {addr.transport!r}, which is not in "
                f"enable_transports={transports}"
            )
    return addrs, transports


async def probe_registry(addr: Address, timeout: float, security: Security | None = None) -> Probe:
    """Classify what listens at ``addr``: nothing, a registrar, something else, or
    something that does not answer within ``timeout`` (connect and handshake).

    Raises :class:`RuntimeBootError` when a registrar answers but refuses this side's
    credentials (no or another shared secret): joining it cannot work, and binding its
    address must not be attempted.
    """
    security = security or Security()
    try:
        stream: trio.abc.Stream = await open_stream(addr, timeout)
    except TimeoutError:
        # The connect itself hangs (a full accept backlog, a host that drops SYNs):
        # something may hold the address, so it must not count as free.
        return "unresponsive"
    except OSError:
        return "absent"
    if security.tls is not None and isinstance(addr, TCPAddress):
        stream = trio.SSLStream(stream, security.client_ctx, server_hostname=addr.host)
    chan = Channel(stream, raddr=addr)
    secret = security.secret
    hello = Handshake(
        name="boot-probe",
        uuid=str(uuidlib.uuid4()),
        pid=os.getpid(),
        is_registrar=False,
        nonce=os.urandom(NONCE_SIZE) if secret is not None else b"",
        auth=secret is not None,
    )
    aid = None
    try:
        # Our own deadline, not the handshake's: silence is "unresponsive", while an
        # answer that is not a registrar's handshake is "occupied".
        with trio.move_on_after(timeout):
            aid = await chan.handshake(hello, math.inf, secret)
    except AuthenticationError as exc:
        if exc.peer_is_registrar:
            raise RuntimeBootError(f"the registrar at {addr} refused this actor: {exc}") from exc
        return "occupied"
    except _PROBE_FAILURES:
        return "occupied"
    finally:
        with trio.CancelScope(shield=True):
            await chan.aclose()
    if aid is None:
        return "unresponsive"
    return "registrar" if aid.is_registrar else "occupied"


async def _probe_all(
    addrs: list[Address], timeout: float, security: Security | None = None
) -> dict[Address, Probe]:
    """Probe every address concurrently, so the boot costs one probe deadline at most.

    Once a registrar answered, the probes still running get :data:`BOOT_GRACE` more
    seconds (within the deadline); those still silent then are "unresponsive".
    """
    results: dict[Address, Probe] = {}

    async def _probe(addr: Address, cancel: trio.CancelScope) -> None:
        found = await probe_registry(addr, timeout, security)
        results[addr] = found
        if found == "registrar":
            cancel.deadline = min(cancel.deadline, trio.current_time() + BOOT_GRACE)

    with collapse_eg():
        async with trio.open_nursery() as nursery:
            for addr in addrs:
                nursery.start_soon(_probe, addr, nursery.cancel_scope)
    return {a: results.get(a, "unresponsive") for a in addrs}


def _join_bind_addrs(
    name: str, uuid: str, transports: list[str], reg_addrs: list[Address]
) -> list[Address]:
    binds: list[Address] = []
    for transport in transports:
        if transport == "tcp":
            tcp_regs = [a for a in reg_addrs if isinstance(a, TCPAddress)]
            host = tcp_regs[0].host if tcp_regs and is_local_host(tcp_regs[0].host) else "127.0.0.1"
            if host in ("0.0.0.0", "::", "localhost"):
                host = "127.0.0.1"
            binds.append(TCPAddress(host, 0))
        else:
            binds.append(UDSAddress(str(runtime_dir()), f"{name}@{uuid[:8]}.sock"))
    return binds


@contextmanager
def _root_vars(actor: Actor, transports: list[str]) -> Iterator[None]:
    """Publish the root's runtime variables (``get_runtime_vars()``) while it runs."""
    _state._set_runtime_vars(
        is_root=True,
        root_addrs=[unwrap_address(a) for a in actor.accept_addrs],
        registry_addrs=[unwrap_address(a) for a in actor.reg_addrs],
        transports=transports,
    )
    try:
        yield
    finally:
        _state._reset_runtime_vars()


@asynccontextmanager
async def open_root_actor(
    *,
    name: str | None = DEFAULT_ROOT_NAME,
    registry_addrs: Sequence[AddressLike] | None = None,
    enable_transports: Sequence[str] | None = None,
    ensure_registry: bool = False,
    registry_backend: str | RegistryBackend | None = None,
    enable_modules: Sequence[str] | None = None,
    loglevel: str | None = None,
    accept_addrs: Sequence[AddressLike] | None = None,
    tpt_bind_addrs: Sequence[AddressLike] | None = None,
    rpc_module_paths: Sequence[str] | None = None,
    start_method: str | None = None,
    debug_mode: bool = False,
    maybe_enable_greenback: bool = False,
    enable_stack_on_sig: bool = False,
    hide_tb: bool = True,
    debug_filter: Callable[[BaseException], bool] | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    renew_interval: float | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    purge_interval: float = DEFAULT_PURGE_INTERVAL,
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
    secret: bytes | str | os.PathLike[str] | None = None,
    tls: TLSConfig | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    limits: RegistryLimits | None = None,
    max_connections_per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
    max_calls_per_channel: int = DEFAULT_MAX_CALLS_PER_CHANNEL,
    max_calls: int = DEFAULT_MAX_CALLS,
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    frame_deadline: float = DEFAULT_FRAME_DEADLINE,
    peer_log_interval: float = DEFAULT_PEER_LOG_INTERVAL,
    **unexpected: Any,
) -> AsyncIterator[Actor]:
    """Boot this process's root actor; yields the :class:`Actor`.

    Every registry address is probed with a bounded handshake. If a registrar answers at
    any of them, this root joins it and binds fresh addresses of the same transports. If
    nothing listens at any of them, this root becomes the :class:`Registrar`, binding
    those addresses, with its table kept in ``registry_backend`` (a URL or a backend
    object; default ``$TRACTOR_REG_BACKEND``, else ``memory://``). Either way the root is
    named ``'root'`` unless ``name`` says otherwise.

    Upstream's keywords are accepted: ``tpt_bind_addrs`` (same as ``accept_addrs``),
    ``rpc_module_paths`` (added to ``enable_modules``), ``start_method`` (``'trio'``),
    ``hide_tb`` and ``debug_filter`` (no effect here); ``debug_mode``,
    ``maybe_enable_greenback`` and ``enable_stack_on_sig`` must stay false
    (:class:`NonGoalError` otherwise). As upstream, ``$TRACTOR_LOGLEVEL``, when set,
    wins over ``loglevel``.

    An address that takes the connection but does not answer the handshake within
    ``handshake_timeout`` (a stopped registrar, a half-open peer) is *unresponsive*: the
    root joins a registrar that answered elsewhere (once one answered, the others get
    :data:`BOOT_GRACE` more seconds), and never binds it.

    Raises ``RuntimeError`` when an address is held by something that is not a registrar,
    when no registrar answers and some address is unresponsive,
    when ``ensure_registry=True`` but another registrar answers, or when a root already
    runs in this process; ``ValueError`` for a registry address whose transport is not
    enabled, a bad ``loglevel`` or ``start_method``; ``TypeError`` for ``arbiter_addr=``.
    """
    if "arbiter_addr" in unexpected:
        raise TypeError(
            "open_root_actor() no longer accepts 'arbiter_addr'; pass registry_addrs=[addr] instead"
        )
    if unexpected:
        raise TypeError(f"open_root_actor() got unexpected keyword arguments {sorted(unexpected)}")
    check_start_method(start_method)
    check_non_goal_flags(
        debug_mode=debug_mode,
        maybe_enable_greenback=maybe_enable_greenback,
        enable_stack_on_sig=enable_stack_on_sig,
    )
    enable_modules = module_list(enable_modules, rpc_module_paths)
    accept_addrs = merge_bind_addrs(accept_addrs, tpt_bind_addrs)
    loglevel = env_loglevel(loglevel)
    running = _state.maybe_current_actor()
    if running is not None:
        raise RuntimeBootError(f"a root actor already runs in this process: {running!r}")
    reg_addrs, transports = resolve_registry_addrs(registry_addrs, enable_transports)
    setup_logging(loglevel)
    security = Security.resolve(secret, tls)
    config = RuntimeConfig(
        enable_transports=transports,
        loglevel=loglevel,
        lease_ttl=lease_ttl,
        renew_interval=renew_interval,
        max_frame_size=max_frame_size,
        handshake_timeout=handshake_timeout,
        connect_timeout=connect_timeout,
    )
    backend_spec = registry_backend or os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND_URL
    if isinstance(backend_spec, str):
        open_backend(backend_spec)  # validate the URL before touching the network
    common: dict[str, Any] = dict(
        enable_modules=list(enable_modules or []),
        max_frame_size=max_frame_size,
        handshake_timeout=handshake_timeout,
        connect_timeout=connect_timeout,
        lease_ttl=lease_ttl,
        renew_interval=renew_interval,
        call_timeout=call_timeout,
        security=security,
        max_connections=max_connections,
        loglevel=loglevel,
        max_connections_per_host=max_connections_per_host,
        max_calls_per_channel=max_calls_per_channel,
        max_calls=max_calls,
        max_buffered_bytes=max_buffered_bytes,
        frame_deadline=frame_deadline,
        peer_log_interval=peer_log_interval,
    )

    for attempt in range(3):
        results = await _probe_all(reg_addrs, handshake_timeout, security)
        occupied = [a for a in reg_addrs if results[a] == "occupied"]
        registrars = [a for a in reg_addrs if results[a] == "registrar"]
        silent = [a for a in reg_addrs if results[a] == "unresponsive"]
        if occupied:
            raise RuntimeBootError(
                "registry address(es) "
                + ", ".join(str(a) for a in occupied)
                + " are held by something that is not a tractor_reg registrar (or by one that "
                "needs TLS settings this actor does not have)"
            )
        if silent and not registrars:
            # Something holds these addresses (a stopped registrar, a half-open peer):
            # binding them cannot work, and becoming a second registrar beside a
            # stopped one would split the registry when it resumes.
            raise RuntimeBootError(
                "no registrar answered: registry address(es) "
                + ", ".join(str(a) for a in silent)
                + f" took the connection but did not answer the handshake within "
                f"{handshake_timeout:g}s (a stopped or overloaded registrar, or another "
                "program); not binding them"
            )
        if silent:
            log.warning(
                "registry address(es) %s did not answer within the boot deadline; joining "
                "the registrar at %s and skipping them until they answer",
                ", ".join(str(a) for a in silent),
                registrars[0],
            )
        if registrars:
            if ensure_registry:
                raise RuntimeBootError(
                    "ensure_registry=True but a registrar already answers at "
                    + ", ".join(str(a) for a in registrars)
                )
            actor_uuid = str(uuidlib.uuid4())
            actor_name = name or DEFAULT_ROOT_NAME
            binds = (
                list(accept_addrs)  # already wrapped by merge_bind_addrs
                if accept_addrs
                else _join_bind_addrs(actor_name, actor_uuid, transports, reg_addrs)
            )
            ordered = registrars + [a for a in reg_addrs if a not in registrars]
            actor = Actor(
                actor_name, uuid=actor_uuid, reg_addrs=ordered, bind_addrs=binds, **common
            )
            actor.runtime_config = config  # type: ignore[attr-defined]
            for addr in silent:
                actor.registry_failed(addr)
            with root_sigterm() as term:
                async with actor.running():
                    term.watch(actor)
                    with _root_vars(actor, transports):
                        yield actor
            return

        # Nobody answers anywhere: this root becomes the registrar.
        actor_name = name or DEFAULT_ROOT_NAME
        registrar_addrs = list(reg_addrs)
        if accept_addrs:
            registrar_addrs += [a for a in accept_addrs if a not in reg_addrs]
        entered = False
        try:
            # outermost: the store is closed before a SIGTERM ends the process
            with root_sigterm() as term:
                async with opened_backend(backend_spec) as backend:
                    registrar = Registrar(
                        actor_name,
                        backend=backend,
                        reg_addrs=reg_addrs,
                        bind_addrs=registrar_addrs,
                        purge_interval=purge_interval,
                        probe_timeout=probe_timeout,
                        limits=limits,
                        **common,
                    )
                    registrar.runtime_config = config  # type: ignore[attr-defined]
                    async with registrar.running():
                        entered = True
                        term.watch(registrar)
                        with _root_vars(registrar, transports):
                            yield registrar
            return
        except OSError as exc:
            if entered or exc.errno != errno.EADDRINUSE:
                raise
            # Another root bound the address between our probe and our bind: probe
            # again, and most likely join it this time.
            log.info("lost the race to bind %s; probing again (attempt %d)", reg_addrs, attempt + 2)
    raise RuntimeBootError(f"could not bind or join a registrar at {[str(a) for a in reg_addrs]}")


@asynccontextmanager
async def open_registry_client(
    registry_addrs: Sequence[AddressLike] | None = None,
    *,
    name: str = "tractor-reg-client",
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    secret: bytes | str | os.PathLike[str] | None = None,
    tls: TLSConfig | None = None,
) -> AsyncIterator[Actor]:
    """A minimal runtime for tools that query a registry without joining it.

    Unlike :func:`open_root_actor` it never becomes a registrar, listens on nothing and
    registers nothing (so it does not show up in the registry it inspects). Discovery
    calls (``get_registry``, ``find_actor``, ``wait_for_actor``, ``watch``) work inside.
    Raises :class:`RegistryUnavailable` when no registrar answers at any address.
    """
    running = _state.maybe_current_actor()
    if running is not None:
        raise RuntimeBootError(f"an actor already runs in this process: {running!r}")
    if registry_addrs is None:
        addrs = env_registry_addrs() or [default_registry_addr("tcp")]
    else:
        addrs = [wrap_address(a) for a in registry_addrs]
    security = Security.resolve(secret, tls)
    results = await _probe_all(addrs, handshake_timeout, security)
    registrars = [a for a in addrs if results[a] == "registrar"]
    silent = [a for a in addrs if results[a] == "unresponsive"]
    if not registrars:
        raise RegistryUnavailable("no registrar answers at " + ", ".join(str(a) for a in addrs))
    client = Actor(
        name,
        # A silent registrar stays on the list (skipped until it answers): it may resume.
        reg_addrs=registrars + silent,
        bind_addrs=[],
        register_self=False,
        connect_timeout=connect_timeout,
        call_timeout=call_timeout,
        handshake_timeout=handshake_timeout,
        max_frame_size=max_frame_size,
        security=security,
    )
    for addr in silent:
        client.registry_failed(addr)
    async with client.running():
        yield client


def run_daemon(
    enable_modules: Sequence[str],
    name: str | None = DEFAULT_ROOT_NAME,
    registry_addrs: Sequence[AddressLike] | None = None,
    start_method: str | None = None,
    debug_mode: bool = False,
    **kwargs: Any,
) -> None:
    """Run a root actor that serves ``enable_modules`` until it is cancelled (blocking).

    Upstream's convenience entry point: imports every module first (so a typo fails
    before anything binds), then runs ``open_root_actor(...)`` under ``trio.run`` and
    sleeps until Ctrl-C or a signal ends it. ``kwargs`` go to :func:`open_root_actor`.
    """
    modules = module_list(enable_modules)
    for module in modules:
        importlib.import_module(module)

    async def _serve() -> None:
        async with open_root_actor(
            name=name,
            registry_addrs=registry_addrs,
            start_method=start_method,
            debug_mode=debug_mode,
            enable_modules=modules,
            **kwargs,
        ):
            await trio.sleep_forever()

    trio.run(_serve)
