"""Transport addresses: TCP ``(host, port)`` and UDS ``(directory, filename)``.

Both address types are ``NamedTuple``\\ s, so they compare equal to the plain tuples that
upstream ``tractor`` code passes around and encode on the wire as 2-element arrays.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias
from urllib.parse import quote, unquote, urlsplit

from ._exceptions import AddressError

#: The transports this package speaks.
TRANSPORTS: tuple[str, ...] = ("tcp", "uds")

DEFAULT_REGISTRY_HOST = "127.0.0.1"
DEFAULT_REGISTRY_PORT = 1616
#: Longest path a ``sockaddr_un`` can hold on Linux (108 bytes including the NUL).
UDS_PATH_MAX = 107


class TCPAddress(NamedTuple):
    """A TCP endpoint."""

    host: str
    port: int

    @property
    def transport(self) -> str:
        return "tcp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


class UDSAddress(NamedTuple):
    """A Unix domain socket: the directory and the socket file name inside it."""

    directory: str
    filename: str

    @property
    def transport(self) -> str:
        return "uds"

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.filename)

    def __str__(self) -> str:
        return "uds://" + quote(self.path, safe="/@:+,=~!$&'()*;")


Address: TypeAlias = TCPAddress | UDSAddress
#: What users may pass where an address is expected.
AddressLike: TypeAlias = Address | tuple[str, int] | tuple[str, str] | list[Any] | str


def wrap_address(value: object) -> Address:
    """Turn a plain tuple/list, a ``tcp://``/``uds://`` string or an address into an address.

    ``(str, int)`` is TCP and ``(str, str)`` is UDS. Raises :class:`AddressError` (a
    ``ValueError``) for anything else.
    """
    if isinstance(value, TCPAddress | UDSAddress):
        return value
    if isinstance(value, str):
        return parse_address(value)
    if isinstance(value, tuple | list) and len(value) == 2:
        first, second = value
        if not isinstance(first, str) or not first:
            raise AddressError(f"address {value!r}: first element must be a non-empty str")
        if isinstance(second, bool):
            raise AddressError(f"address {value!r}: port must be an int, not a bool")
        if isinstance(second, int):
            if not 0 <= second <= 65535:
                raise AddressError(f"address {value!r}: TCP port out of range 0..65535")
            return TCPAddress(first, second)
        if isinstance(second, str):
            if not second or "/" in second or "\0" in second:
                raise AddressError(f"address {value!r}: UDS filename must be a plain file name")
            if not os.path.isabs(first):
                raise AddressError(f"address {value!r}: UDS directory must be an absolute path")
            if "\0" in first:
                raise AddressError(f"address {value!r}: UDS directory contains NUL")
            return UDSAddress(first, second)
    raise AddressError(f"not a TCP (host, port) or UDS (directory, filename) address: {value!r}")


def unwrap_address(addr: Address) -> tuple[str, int] | tuple[str, str]:
    """The plain tuple form of an address (what goes on the wire and into backends)."""
    if isinstance(addr, TCPAddress):
        return (addr.host, addr.port)
    return (addr.directory, addr.filename)


def parse_address(text: str) -> Address:
    """Parse ``tcp://host:port``, ``tcp://[::1]:port`` or ``uds:///dir/file.sock``."""
    if not isinstance(text, str):
        raise AddressError(f"address string expected, got {type(text).__name__}")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise AddressError(f"malformed address {text!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise AddressError(f"address {text!r} must not have a query or fragment")
    if scheme == "tcp":
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise AddressError(f"malformed TCP address {text!r}: {exc}") from exc
        if not host or port is None or parts.path not in ("", "/"):
            raise AddressError(f"TCP address must look like tcp://HOST:PORT, got {text!r}")
        if parts.username or parts.password:
            raise AddressError(f"TCP address {text!r} must not carry credentials")
        return TCPAddress(host, port)
    if scheme in ("uds", "unix"):
        if parts.netloc:
            raise AddressError(
                f"UDS address must look like uds:///abs/dir/file.sock (empty host), got {text!r}"
            )
        path = unquote(parts.path)
        if not path.startswith("/") or path.endswith("/"):
            raise AddressError(f"UDS address needs an absolute socket file path, got {text!r}")
        directory, filename = os.path.split(path)
        return wrap_address((directory, filename))
    raise AddressError(f"unknown address scheme in {text!r}; expected tcp:// or uds://")


def format_address(addr: AddressLike) -> str:
    """The ``tcp://``/``uds://`` string form of an address."""
    return str(wrap_address(addr))


def runtime_dir() -> Path:
    """The per-user directory for UDS socket files (created owner-only on first use).

    ``$XDG_RUNTIME_DIR/tractor_reg`` when that is set, else ``<tmp>/tractor_reg-<uid>``.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = (
        Path(base, "tractor_reg")
        if base
        else Path(tempfile.gettempdir(), f"tractor_reg-{os.getuid()}")
    )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def default_registry_addr(transport: str) -> Address:
    """The standard registry address of a transport.

    TCP: ``127.0.0.1:1616``; UDS: ``registry@1616.sock`` in :func:`runtime_dir`.
    """
    if transport == "tcp":
        return TCPAddress(DEFAULT_REGISTRY_HOST, DEFAULT_REGISTRY_PORT)
    if transport == "uds":
        return UDSAddress(str(runtime_dir()), f"registry@{DEFAULT_REGISTRY_PORT}.sock")
    raise ValueError(f"unknown transport {transport!r}; expected one of {TRANSPORTS}")


def check_uds_path(addr: UDSAddress) -> None:
    """Refuse a socket path that does not fit in ``sockaddr_un``."""
    if len(os.fsencode(addr.path)) > UDS_PATH_MAX:
        raise AddressError(
            f"UDS path {addr.path!r} is {len(os.fsencode(addr.path))} bytes; "
            f"the limit is {UDS_PATH_MAX}"
        )


@lru_cache(maxsize=1)
def _local_host_addresses() -> frozenset[str]:
    """Addresses of this host's interfaces, as far as the resolver tells (cached)."""
    found: set[str] = set()
    names = {socket.gethostname(), socket.getfqdn(), "localhost"}
    for name in names:
        try:
            for info in socket.getaddrinfo(name, None):
                found.add(str(info[4][0]))
        except OSError:
            continue
    return frozenset(found)


@lru_cache(maxsize=1024)
def is_local_host(host: str) -> bool:
    """True for loopback, the wildcard, ``localhost`` and this host's own interface addresses."""
    if host in ("localhost", "0.0.0.0", "::"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host in _local_host_addresses()
    if ip.is_loopback or ip.is_unspecified:
        return True
    return str(ip) in _local_host_addresses() or _assigned_here(host)


@lru_cache(maxsize=256)
def _assigned_here(host: str) -> bool:
    """True if ``host`` is an address of one of this host's interfaces (it can be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


def _tier(addr: Address) -> int:
    if isinstance(addr, UDSAddress):
        return 0
    return 1 if is_local_host(addr.host) else 2


def prefer_addr(addrs: Sequence[AddressLike] | Iterable[AddressLike]) -> list[Address]:
    """Rank a multihomed address list best first: UDS > local TCP > remote TCP.

    Within a tier the latest registered (the last in the input) comes first.
    Raises :class:`AddressError` for an empty list or an invalid member.
    """
    wrapped = [wrap_address(a) for a in addrs]
    if not wrapped:
        raise AddressError("prefer_addr() needs at least one address")
    # enumerate gives registration order; sort by tier, then newest first.
    order = sorted(enumerate(wrapped), key=lambda item: (_tier(item[1]), -item[0]))
    return [addr for _, addr in order]
