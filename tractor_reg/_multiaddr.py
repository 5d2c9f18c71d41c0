"""Multiaddr endpoints: ``/ip4/ADDR/tcp/PORT``, ``/ip6/ADDR/tcp/PORT`` and ``/unix/PATH``.

Parsing and building go through the ``multiaddr`` package (the multiformats implementation),
imported on first use so that ``import tractor_reg`` does not pay for it. Every failure of
that package, and every multiaddr naming a transport this package does not speak, surfaces as
one :class:`AddressError` that names the input and the supported forms.

A ``/unix/`` path is taken literally (no percent-decoding); runs of ``/`` collapse to one.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from ._addr import (
    Address,
    AddressLike,
    Multiaddr,
    TCPAddress,
    UDSAddress,
    coerce_address,
    wrap_address,
)
from ._exceptions import AddressError

#: The multiaddr forms an address can take, for error messages.
SUPPORTED_MADDRS = "/ip4/ADDR/tcp/PORT, /ip6/ADDR/tcp/PORT or /unix/ABSOLUTE_SOCKET_PATH"

#: An endpoint table as upstream's ``parse_endpoints`` takes it: service name -> addresses
#: (multiaddr strings, URLs, tuples or address objects).
EndpointsTable: TypeAlias = Mapping[str, Sequence[AddressLike | None]]
#: :func:`parse_endpoints`' answer: service name -> addresses.
ParsedEndpoints: TypeAlias = dict[str, list[Address]]


def _new_maddr(text: str) -> Multiaddr:
    """``multiaddr.Multiaddr(text)``, every parse error as one :class:`AddressError`."""
    import multiaddr  # type: ignore[import-untyped]
    from multiaddr import exceptions

    try:
        parsed: Multiaddr = multiaddr.Multiaddr(text)
    except exceptions.StringParseError as exc:
        reason = f"{exc.message} ({exc.protocol})" if exc.protocol else str(exc.message)
        raise AddressError(
            f"malformed multiaddr {text!r}: {reason}; expected {SUPPORTED_MADDRS}"
        ) from exc
    except (exceptions.Error, ValueError) as exc:
        raise AddressError(
            f"malformed multiaddr {text!r}: {exc}; expected {SUPPORTED_MADDRS}"
        ) from exc
    return parsed


def parse_maddr(maddr: str | Multiaddr) -> Address:
    """The address a multiaddr names: ``/ip4/ADDR/tcp/PORT`` and ``/ip6/ADDR/tcp/PORT``
    give a :class:`TCPAddress`, ``/unix/PATH`` a :class:`UDSAddress`.

    Raises :class:`AddressError` (a ``ValueError``) for a malformed multiaddr or one with
    another protocol stack (``/udp/``, ``/dns4/``, a trailing ``/p2p/``, ...).
    """
    text = str(maddr)
    parsed = _new_maddr(text)
    stack = [str(proto.name) for proto in parsed.protocols()]
    if stack in (["ip4", "tcp"], ["ip6", "tcp"]):
        host = str(parsed.value_for_protocol(stack[0]))
        port = int(str(parsed.value_for_protocol("tcp")))
        return TCPAddress(host, port)
    if stack == ["unix"]:
        if text.endswith("/"):
            raise AddressError(
                f"multiaddr {text!r} names a directory; /unix/ needs a socket file path"
            )
        path = re.sub("/+", "/", str(parsed.value_for_protocol("unix")))
        try:
            return UDSAddress.from_addr(os.path.split(path))
        except AddressError as exc:
            raise AddressError(f"multiaddr {text!r}: {exc}") from exc
    shown = "/".join(stack) or "no protocols"
    raise AddressError(f"unsupported multiaddr {text!r} ({shown}); expected {SUPPORTED_MADDRS}")


def mk_maddr(addr: AddressLike) -> Multiaddr:
    """The multiaddr of an address (any form :func:`wrap_address` takes).

    TCP needs an IP literal host (``/ip4/`` or ``/ip6/``); a host name is an
    :class:`AddressError`. ``str()`` of the answer is the multiaddr string.
    """
    wrapped = coerce_address(addr)
    if isinstance(wrapped, TCPAddress):
        family = _ip_family(wrapped)
        return _new_maddr(f"/{family}/{wrapped.host}/tcp/{wrapped.port}")
    return _new_maddr("/unix" + wrapped.path)


def _ip_family(addr: TCPAddress) -> str:
    try:
        version = ipaddress.ip_address(addr.host).version
    except ValueError:
        raise AddressError(
            f"no multiaddr for {addr}: the host must be an IPv4 or IPv6 address, "
            f"not a name ({addr.host!r})"
        ) from None
    return "ip4" if version == 4 else "ip6"


def parse_endpoints(service_table: EndpointsTable) -> ParsedEndpoints:
    """Wrap every address of a service-endpoint table, as upstream's ``parse_endpoints``.

    ``{'name': ['/ip4/127.0.0.1/tcp/1616', ('127.0.0.1', 1617), ...], ...}`` gives a new
    ``dict`` with the same keys whose lists hold :class:`TCPAddress`/:class:`UDSAddress`
    objects, in order. Entries take every form :func:`wrap_address` takes. Raises
    :class:`AddressError` naming the service for a bad entry or a value that is not a list.
    """
    if not isinstance(service_table, Mapping):
        raise AddressError(
            "parse_endpoints() takes a mapping of service name -> list of addresses, "
            f"got {type(service_table).__name__}"
        )
    parsed: ParsedEndpoints = {}
    for name, entries in service_table.items():
        if not isinstance(entries, list | tuple):
            raise AddressError(
                f"endpoints of {name!r} must be a list of addresses, "
                f"got {type(entries).__name__}: {entries!r}"
            )
        wrapped: list[Address] = []
        for entry in entries:
            try:
                wrapped.append(wrap_address(entry))
            except AddressError as exc:
                raise AddressError(f"endpoints of {name!r}: {exc}") from exc
        parsed[name] = wrapped
    return parsed
