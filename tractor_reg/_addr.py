"""Transport addresses: TCP ``(host, port)`` and UDS ``(directory, filename)``.

Both address types are tuples underneath (subclasses of a ``NamedTuple``), so they compare
equal to the plain tuples that upstream ``tractor`` code passes around and encode on the wire
and in the backends as 2-element arrays. On top of that they carry upstream's address-object
surface: ``proto_key``, ``unwrap()``, ``bindspace``, ``def_bindspace``, ``is_valid``,
``from_addr()``, ``get_random()`` and ``get_root()``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeAlias, overload
from urllib.parse import quote, unquote, urlsplit

from . import _state
from ._exceptions import AddressError

#: The transports this package speaks.
TRANSPORTS: tuple[str, ...] = ("tcp", "uds")

DEFAULT_REGISTRY_HOST = "127.0.0.1"
DEFAULT_REGISTRY_PORT = 1616
#: The transport whose registry address ``wrap_address(None)`` means (as upstream's default).
DEFAULT_TRANSPORT = "tcp"
#: Longest path a ``sockaddr_un`` can hold on Linux (108 bytes including the NUL).
UDS_PATH_MAX = 107


class _TCPFields(NamedTuple):
    host: str
    port: int


class TCPAddress(_TCPFields):
    """A TCP endpoint, ``TCPAddress(host, port)``; equal to the tuple ``(host, port)``."""

    __slots__ = ()

    proto_key: ClassVar[str] = "tcp"
    #: Where :meth:`get_random` binds when given no bindspace.
    def_bindspace: ClassVar[str] = DEFAULT_REGISTRY_HOST

    @property
    def transport(self) -> str:
        return "tcp"

    @property
    def bindspace(self) -> str:
        """The part of the address a bind chooses besides the port: the host."""
        return self.host

    @property
    def domain(self) -> str:
        return self.host

    @property
    def is_valid(self) -> bool:
        """True if a peer could dial this address.

        A port in 1..65535 and a non-empty host that, when it is an IP literal, is not the
        wildcard, multicast or reserved. Host names count as valid without a lookup.
        """
        if not self.host or not 0 < self.port <= 65535:
            return False
        try:
            ip = ipaddress.ip_address(self.host.split("%", 1)[0])
        except ValueError:
            return True
        # ::1 sits in the reserved ::/8 block yet is the IPv6 loopback.
        return ip.is_loopback or not (ip.is_unspecified or ip.is_multicast or ip.is_reserved)

    def unwrap(self) -> tuple[str, int]:
        """The plain ``(host, port)`` tuple."""
        return (self.host, self.port)

    @classmethod
    def from_addr(cls, addr: Any) -> TCPAddress:
        """A checked address from a ``(host, port)`` tuple/list or any form
        :func:`wrap_address` takes that denotes TCP."""
        wrapped = coerce_address(addr)
        if not isinstance(wrapped, TCPAddress):
            raise AddressError(f"{addr!r} is a UDS address, not a TCP (host, port) address")
        return wrapped

    @classmethod
    def get_random(cls, bindspace: str | None = None) -> TCPAddress:
        """A fresh bindable address: ``(bindspace, 0)``; the OS picks the port at bind."""
        return cls(bindspace or cls.def_bindspace, 0)

    @classmethod
    def get_root(cls) -> TCPAddress:
        """The default registry address, ``127.0.0.1:1616``."""
        return cls(DEFAULT_REGISTRY_HOST, DEFAULT_REGISTRY_PORT)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


class _RuntimeDirAttr:
    """Class attribute that reads :func:`runtime_dir` on access (it follows the environment)."""

    def __get__(self, obj: object, owner: type | None = None) -> Path:
        return runtime_dir()


class _UDSFields(NamedTuple):
    directory: str
    filename: str


class UDSAddress(_UDSFields):
    """A Unix domain socket: the directory and the socket file name inside it.

    Equal to the tuple ``(directory, filename)``. Built positionally,
    ``UDSAddress(directory, filename)``, or with upstream's keywords
    ``UDSAddress(filedir=..., filename=..., maybe_pid=...)``; ``pathlib.Path`` parts are
    turned into ``str`` and a missing directory means :func:`runtime_dir`.

    ``maybe_pid`` (the pid of the process behind the socket, when known) rides along on
    the instance but is not part of the tuple: it takes no part in equality, hashing,
    ``unwrap()`` or the wire form, and ``_replace()`` drops it.
    """

    proto_key: ClassVar[str] = "uds"
    #: The directory :meth:`get_random` and a directory-less address use (a ``Path``).
    def_bindspace = _RuntimeDirAttr()

    maybe_pid: int | None = None

    def __new__(
        cls,
        directory: str | os.PathLike[str] | None = None,
        filename: str | os.PathLike[str] | None = None,
        maybe_pid: int | None = None,
        *,
        filedir: str | os.PathLike[str] | None = None,
    ) -> Self:
        if directory is not None and filedir is not None:
            raise TypeError("UDSAddress() takes the directory once: directory or filedir=")
        if filename is None:
            raise TypeError("UDSAddress() needs a filename")
        where = directory if directory is not None else filedir
        self = super().__new__(
            cls, str(runtime_dir()) if where is None else os.fspath(where), os.fspath(filename)
        )
        if maybe_pid is not None:
            self.maybe_pid = maybe_pid
        return self

    @property
    def transport(self) -> str:
        return "uds"

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.filename)

    @property
    def sockpath(self) -> Path:
        """The socket file's path."""
        return Path(self.directory, self.filename)

    @property
    def filedir(self) -> Path:
        """The directory holding the socket file (upstream's field name)."""
        return Path(self.directory)

    @property
    def bindspace(self) -> Path:
        """The directory the socket file is bound in."""
        return Path(self.directory)

    @property
    def is_valid(self) -> bool:
        """True for an absolute directory, a plain file name and a path that fits in
        ``sockaddr_un``."""
        return (
            os.path.isabs(self.directory)
            and "\0" not in self.directory
            and bool(self.filename)
            and "/" not in self.filename
            and "\0" not in self.filename
            and len(os.fsencode(self.path)) <= UDS_PATH_MAX
        )

    def unwrap(self) -> tuple[str, str]:
        """The plain ``(directory, filename)`` tuple."""
        return (self.directory, self.filename)

    @classmethod
    def from_addr(cls, addr: Any) -> UDSAddress:
        """A checked address from a ``(directory, filename)`` pair (``str`` or ``Path``
        parts), a socket path, or any form :func:`wrap_address` takes that denotes UDS."""
        wrapped = coerce_address(addr)
        if not isinstance(wrapped, UDSAddress):
            raise AddressError(f"{addr!r} is a TCP address, not a UDS (directory, filename)")
        return wrapped

    @classmethod
    def get_random(cls, bindspace: str | os.PathLike[str] | None = None) -> UDSAddress:
        """A fresh socket file name, unique to this call, in ``bindspace`` (default
        :func:`runtime_dir`); ``maybe_pid`` is this process's pid.

        The name is ``<actor name>.<token>@<pid>.sock`` (``addr`` when no actor runs here).
        """
        directory = os.fspath(bindspace) if bindspace is not None else str(runtime_dir())
        if not os.path.isabs(directory):
            raise AddressError(f"UDS bindspace must be an absolute directory, got {directory!r}")
        actor = _state.maybe_current_actor()
        label = _SAFE_LABEL.sub("_", actor.name)[:24] if actor is not None else "addr"
        pid = os.getpid()
        addr = cls(directory, f"{label}.{uuid.uuid4().hex[:8]}@{pid}.sock", pid)
        check_uds_path(addr)
        return addr

    @classmethod
    def get_root(cls) -> UDSAddress:
        """The default registry address: ``registry@1616.sock`` in :func:`runtime_dir`."""
        return cls(str(runtime_dir()), f"registry@{DEFAULT_REGISTRY_PORT}.sock")

    def __repr__(self) -> str:
        plain = super().__repr__()
        if self.maybe_pid is None:
            return plain
        return f"{plain[:-1]}, maybe_pid={self.maybe_pid})"

    def __str__(self) -> str:
        return "uds://" + quote(self.path, safe="/@:+,=~!$&'()*;")


_SAFE_LABEL = re.compile(r"[^A-Za-z0-9_.-]")


class MaddrProtocol(Protocol):
    """One protocol of a multiaddr's stack (``ip4``, ``tcp``, ``unix``, ...)."""

    @property
    def name(self) -> str: ...
    @property
    def code(self) -> int: ...


class Multiaddr(Protocol):
    """What this package and its users rely on of a ``multiaddr.Multiaddr`` (that package
    ships no type information). ``str()`` of one is its multiaddr string."""

    def protocols(self) -> Sequence[MaddrProtocol]: ...
    def value_for_protocol(self, proto: str | int) -> str | None: ...
    def to_bytes(self) -> bytes: ...
    def encapsulate(self, other: str | Multiaddr) -> Multiaddr: ...
    def decapsulate(self, other: str | Multiaddr) -> Multiaddr: ...


Address: TypeAlias = TCPAddress | UDSAddress
#: What users may pass where an address is expected.
AddressLike: TypeAlias = (
    Address
    | tuple[str, int]
    | tuple[str | os.PathLike[str], str | os.PathLike[str]]
    | list[Any]
    | str
    | os.PathLike[str]
    | Multiaddr
)

_FORMS = (
    "(host, port), (directory, filename), a tcp://HOST:PORT or uds:///PATH URL, or a "
    "multiaddr (/ip4/ADDR/tcp/PORT, /ip6/ADDR/tcp/PORT, /unix/PATH)"
)


def wrap_address(value: object) -> Address:
    """Turn any address form into a :class:`TCPAddress` or :class:`UDSAddress`.

    Takes an address (returned as is), ``(str, int)`` (TCP) or ``(directory, filename)``
    (UDS; ``str`` or ``pathlib.Path`` parts) as a tuple or list, a ``pathlib.Path`` socket
    file, a ``tcp://``/``uds://`` URL, a multiaddr string (``/ip4/…/tcp/…``,
    ``/ip6/…/tcp/…``, ``/unix/…``) or object, and ``None`` (or ``[None, None]``): the
    default registry address of the default transport, ``127.0.0.1:1616``, as upstream's
    ``wrap_address(None)``. Raises :class:`AddressError` (a ``ValueError``) for anything else.
    """
    if value is None or (
        isinstance(value, tuple | list)
        and len(value) == 2
        and value[0] is None
        and value[1] is None
    ):
        return default_registry_addr(DEFAULT_TRANSPORT)
    return coerce_address(value)


def coerce_address(value: object) -> Address:
    """:func:`wrap_address` for values that must name an address themselves: ``None``
    is an error here, never the default (for data from peers, files and tables)."""
    if isinstance(value, TCPAddress | UDSAddress):
        return value
    if isinstance(value, str):
        return parse_address(value)
    if isinstance(value, os.PathLike):
        return _uds_from_path(value, value)
    if _is_multiaddr(value):
        from ._multiaddr import parse_maddr

        return parse_maddr(str(value))
    if isinstance(value, tuple | list) and len(value) == 2:
        first, second = value
        if isinstance(first, os.PathLike) or isinstance(second, os.PathLike):
            if not isinstance(second, str | os.PathLike):
                raise AddressError(f"address {value!r}: a path pairs with a file name, not a port")
            first, second = _fspath_part(value, first), _fspath_part(value, second)
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
    raise AddressError(f"not an address: {value!r}; expected {_FORMS}")


def is_address_pair(value: object) -> bool:
    """True if ``value`` is one ``(host, port)`` or ``(directory, filename)`` pair, not a
    list of two addresses: its second item is a port or a file name (no ``/``), which no
    address string (URL or multiaddr) is."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        return False
    first, second = value
    if isinstance(first, tuple | list):
        return False
    if isinstance(second, os.PathLike):
        second = os.fspath(second)
    return not isinstance(second, str | bytes) or "/" not in str(second)


def _is_multiaddr(value: object) -> bool:
    """True for a ``multiaddr.Multiaddr`` (none exists unless that package was imported)."""
    module = sys.modules.get("multiaddr")
    return module is not None and isinstance(value, module.Multiaddr)


def _fspath_part(value: object, part: object) -> object:
    if isinstance(part, os.PathLike):
        path = os.fspath(part)
        if not isinstance(path, str):
            raise AddressError(f"address {value!r}: paths must be str paths, not bytes")
        return path
    return part


def _uds_from_path(value: object, path: os.PathLike[Any]) -> UDSAddress:
    text = os.fspath(path)
    if not isinstance(text, str):
        raise AddressError(f"address {value!r}: paths must be str paths, not bytes")
    if not os.path.isabs(text) or text.endswith("/"):
        raise AddressError(f"address {value!r}: a UDS socket path must be an absolute file path")
    directory, filename = os.path.split(text)
    wrapped = coerce_address((directory, filename))
    assert isinstance(wrapped, UDSAddress)
    return wrapped


@overload
def unwrap_address(addr: TCPAddress) -> tuple[str, int]: ...
@overload
def unwrap_address(addr: UDSAddress) -> tuple[str, str]: ...
@overload
def unwrap_address(addr: Address) -> tuple[str, int] | tuple[str, str]: ...
def unwrap_address(addr: Address) -> tuple[str, int] | tuple[str, str]:
    """The plain tuple form of an address (what goes on the wire and into backends)."""
    return addr.unwrap()


def parse_address(text: str) -> Address:
    """Parse ``tcp://host:port``, ``tcp://[::1]:port``, ``uds:///dir/file.sock`` or a
    multiaddr (``/ip4/127.0.0.1/tcp/1616``, ``/ip6/::1/tcp/1616``, ``/unix/<path>``)."""
    if not isinstance(text, str):
        raise AddressError(f"address string expected, got {type(text).__name__}")
    if text.startswith("/"):
        from ._multiaddr import parse_maddr

        return parse_maddr(text)
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
        return coerce_address((directory, filename))
    raise AddressError(
        f"unknown address scheme in {text!r}; expected tcp://HOST:PORT, uds:///PATH or a "
        "multiaddr (/ip4/ADDR/tcp/PORT, /ip6/ADDR/tcp/PORT, /unix/PATH)"
    )


def format_address(addr: AddressLike) -> str:
    """The ``tcp://``/``uds://`` string form of an address."""
    return str(coerce_address(addr))


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
        return TCPAddress.get_root()
    if transport == "uds":
        return UDSAddress.get_root()
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
    wrapped = [coerce_address(a) for a in addrs]
    if not wrapped:
        raise AddressError("prefer_addr() needs at least one address")
    # enumerate gives registration order; sort by tier, then newest first.
    order = sorted(enumerate(wrapped), key=lambda item: (_tier(item[1]), -item[0]))
    return [addr for _, addr in order]
