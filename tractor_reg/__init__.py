"""tractor_reg: tractor-style actor discovery with a pluggable, durable registry.

Code written against ``tractor``'s discovery API runs with ``import tractor_reg as tractor``.
"""

from __future__ import annotations

import warnings
from typing import Any

# ``tractor_reg.discovery`` is an attribute, as ``tractor.discovery`` is upstream.
from . import discovery as discovery
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
from ._discovery import find_actor, get_registry, query_actor, wait_for_actor
from ._exceptions import (
    ActorCrashed,
    ActorNotFound,
    AddressError,
    AuthenticationError,
    BackendClosed,
    BackendError,
    BackendURLError,
    ChangesExpired,
    FrameTooLarge,
    HandshakeError,
    InvalidRequest,
    LimitExceeded,
    NoRuntime,
    PermissionDenied,
    ProtocolError,
    RegistryError,
    RegistryTimeout,
    RegistryUnavailable,
    RemoteActorError,
    RPCNotAllowed,
    RuntimeBootError,
    SchemaError,
    StoreBusy,
    StoreUnavailable,
    TractorRegError,
    TransportClosed,
)
from ._ipc import Aid, Channel
from ._multiaddr import mk_maddr, parse_endpoints, parse_maddr
from ._portal import LocalPortal, Portal
from ._registrar import Registrar, RegistryLimits
from ._root import open_registry_client, open_root_actor
from ._security import SecurityConfigError, TLSConfig
from ._spawn import ActorNursery, open_nursery
from ._state import current_actor
from ._watch import Watch, watch
from .backends import Change

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorNotFound",
    "ActorNursery",
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
    "FrameTooLarge",
    "HandshakeError",
    "InvalidRequest",
    "LimitExceeded",
    "LocalPortal",
    "NoRuntime",
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
    "SchemaError",
    "SecurityConfigError",
    "StoreBusy",
    "StoreUnavailable",
    "TCPAddress",
    "TLSConfig",
    "TractorRegError",
    "TransportClosed",
    "UDSAddress",
    "Watch",
    "current_actor",
    "default_registry_addr",
    "find_actor",
    "format_address",
    "get_registry",
    "mk_maddr",
    "open_nursery",
    "open_registry_client",
    "open_root_actor",
    "parse_address",
    "parse_endpoints",
    "parse_maddr",
    "prefer_addr",
    "query_actor",
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
