"""tractor_reg: tractor-style actor discovery with a pluggable, durable registry.

Code written against ``tractor``'s discovery API runs with ``import tractor_reg as tractor``.
"""

from __future__ import annotations

import warnings
from typing import Any

# ``tractor_reg.discovery`` is an attribute, as ``tractor.discovery`` is upstream.
from . import discovery as discovery
from . import log, msg, to_asyncio, trionics
from ._actor import Actor
from ._addr import (
    Address,
    AddressLike,
    TCPAddress,
    UDSAddress,
    default_registry_addr,
    format_address,
    parse_address,
    prefer_addr,
    unwrap_address,
    wrap_address,
)
from ._clustering import open_actor_cluster
from ._discovery import find_actor, get_registry, query_actor, wait_for_actor
from ._exceptions import (
    ActorCrashed,
    ActorFailure,
    ActorNotFound,
    ActorTooSlowError,
    AddressError,
    AuthenticationError,
    BackendClosed,
    BackendError,
    BackendURLError,
    ChangesExpired,
    ContextCancelled,
    FrameTimeout,
    FrameTooLarge,
    HandshakeError,
    InternalError,
    InvalidArgument,
    InvalidRequest,
    LimitExceeded,
    MessagingError,
    ModuleNotExposed,
    MsgTypeError,
    NoResult,
    NoRuntime,
    PermissionDenied,
    ProtocolError,
    RegistryError,
    RegistryTimeout,
    RegistryUnavailable,
    RemoteActorError,
    RPCNotAllowed,
    RuntimeBootError,
    RuntimeFailure,
    SchemaError,
    StoreBusy,
    StoreUnavailable,
    StreamOverrun,
    TractorRegError,
    TransportClosed,
    get_err_type,
    reg_err_types,
)
from ._ipc import Aid, Channel
from ._log import LogLevelError
from ._multiaddr import mk_maddr, parse_endpoints, parse_maddr
from ._nongoals import (
    Context,
    MsgStream,
    NonGoalError,
    breakpoint,
    context,
    current_ipc_ctx,
    pause,
    pause_from_sync,
    post_mortem,
    stream,
)
from ._portal import LocalPortal, Portal
from ._registrar import Registrar, RegistryLimits
from ._root import open_registry_client, open_root_actor, run_daemon
from ._security import SecurityConfigError, TLSConfig
from ._spawn import ActorNursery, open_nursery
from ._state import (
    RuntimeVars,
    current_actor,
    debug_mode,
    get_runtime_vars,
    is_root_process,
)
from ._watch import Watch, watch
from .backends import Change

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorFailure",
    "ActorNotFound",
    "ActorNursery",
    "ActorTooSlowError",
    "Address",
    "AddressError",
    "AddressLike",
    "Aid",
    "AuthenticationError",
    "BackendClosed",
    "BackendError",
    "BackendURLError",
    "Change",
    "ChangesExpired",
    "Channel",
    "Context",
    "ContextCancelled",
    "FrameTimeout",
    "FrameTooLarge",
    "HandshakeError",
    "InternalError",
    "InvalidArgument",
    "InvalidRequest",
    "LimitExceeded",
    "LocalPortal",
    "LogLevelError",
    "MessagingError",
    "ModuleNotExposed",
    "MsgStream",
    "MsgTypeError",
    "NoResult",
    "NoRuntime",
    "NonGoalError",
    "PermissionDenied",
    "Portal",
    "ProtocolError",
    "RPCNotAllowed",
    "Registrar",
    "RegistryError",
    "RegistryLimits",
    "RegistryTimeout",
    "RegistryUnavailable",
    "RemoteActorError",
    "RuntimeBootError",
    "RuntimeFailure",
    "RuntimeVars",
    "SchemaError",
    "SecurityConfigError",
    "StoreBusy",
    "StoreUnavailable",
    "StreamOverrun",
    "TCPAddress",
    "TLSConfig",
    "TractorRegError",
    "TransportClosed",
    "UDSAddress",
    "Watch",
    "breakpoint",
    "context",
    "current_actor",
    "current_ipc_ctx",
    "debug_mode",
    "default_registry_addr",
    "find_actor",
    "format_address",
    "get_err_type",
    "get_registry",
    "get_runtime_vars",
    "is_root_process",
    "log",
    "mk_maddr",
    "msg",
    "open_actor_cluster",
    "open_nursery",
    "open_registry_client",
    "open_root_actor",
    "parse_address",
    "parse_endpoints",
    "parse_maddr",
    "pause",
    "pause_from_sync",
    "post_mortem",
    "prefer_addr",
    "query_actor",
    "reg_err_types",
    "run_daemon",
    "stream",
    "to_asyncio",
    "trionics",
    "unwrap_address",
    "wait_for_actor",
    "watch",
    "wrap_address",
]


def __getattr__(name: str) -> Any:
    # ``Arbiter`` is the pre-0.1.0a6 name of the registrar; keep it importable, loudly.
    if name == "Arbiter":
        warnings.warn(
            "tractor_reg.Arbiter is deprecated; use tractor_reg.Registrar",
            DeprecationWarning,
            stacklevel=2,
        )
        return Registrar
    raise AttributeError(f"module 'tractor_reg' has no attribute {name!r}")
