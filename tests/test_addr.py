"""Addresses: TCP/UDS types, wrap/unwrap, string forms, defaults and ``prefer_addr``."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import socket
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tractor_reg
from tractor_reg import (
    AddressError,
    TCPAddress,
    UDSAddress,
    default_registry_addr,
    format_address,
    parse_address,
    prefer_addr,
    unwrap_address,
    wrap_address,
)
from tractor_reg._addr import runtime_dir

# Documentation addresses (RFC 5737 / RFC 3849): data only, never dialled.
REMOTE_V4 = "203.0.113.5"
REMOTE_V4_B = "198.51.100.7"
REMOTE_V6 = "2001:db8::5"


# -- wrap / unwrap ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [("127.0.0.1", 1616), ["127.0.0.1", 1616]])
def test_wrap_tcp_tuple_and_list(value: object) -> None:
    addr = wrap_address(value)
    assert type(addr) is TCPAddress
    assert addr == TCPAddress("127.0.0.1", 1616)
    assert addr.host == "127.0.0.1" and addr.port == 1616
    assert addr.transport == "tcp"


@pytest.mark.parametrize("value", [("/run/x", "a.sock"), ["/run/x", "a.sock"]])
def test_wrap_uds_tuple_and_list(value: object) -> None:
    addr = wrap_address(value)
    assert type(addr) is UDSAddress
    assert addr == UDSAddress("/run/x", "a.sock")
    assert addr.directory == "/run/x" and addr.filename == "a.sock"
    assert addr.path == "/run/x/a.sock"
    assert addr.transport == "uds"


def test_wrap_is_identity_for_addresses() -> None:
    tcp = TCPAddress("::1", 0)
    uds = UDSAddress("/tmp", "s.sock")
    assert wrap_address(tcp) is tcp
    assert wrap_address(uds) is uds


@pytest.mark.parametrize(
    ("addr", "plain"),
    [
        (TCPAddress("127.0.0.1", 1616), ("127.0.0.1", 1616)),
        (TCPAddress("::1", 65535), ("::1", 65535)),
        (UDSAddress("/tmp/d", "f.sock"), ("/tmp/d", "f.sock")),
    ],
)
def test_addresses_equal_plain_tuples(addr: tractor_reg.Address, plain: tuple[object, ...]) -> None:
    assert addr == plain and plain == addr
    assert hash(addr) == hash(plain)
    assert {plain: "found"}[addr] == "found"
    assert addr in [plain] and plain in {addr}
    assert list(addr) == list(plain)
    host_or_dir, port_or_file = addr
    assert (host_or_dir, port_or_file) == plain
    unwrapped = unwrap_address(addr)
    assert type(unwrapped) is tuple
    assert unwrapped == plain
    assert wrap_address(unwrapped) == addr
    assert wrap_address(list(unwrapped)) == addr


def test_tcp_and_uds_are_distinct() -> None:
    # Typed as the union, the way addresses meet in real code: as their concrete types
    # mypy already knows they differ and rejects the comparison as pointless.
    tcp: tractor_reg.Address = TCPAddress("/x", 1)
    uds: tractor_reg.Address = UDSAddress("/x", "1")
    assert tcp != uds
    assert wrap_address(("/x", 1)) != wrap_address(("/x", "1"))
    assert type(wrap_address(("/x", "1"))) is UDSAddress


def test_unwrap_via_package() -> None:
    assert tractor_reg.unwrap_address(TCPAddress("h", 1)) == ("h", 1)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(("127.0.0.1", True), id="bool-port"),
        pytest.param(("127.0.0.1", False), id="bool-port-false"),
        pytest.param(("127.0.0.1", -1), id="negative-port"),
        pytest.param(("127.0.0.1", 65536), id="port-too-big"),
        pytest.param(("127.0.0.1", 1.0), id="float-port"),
        pytest.param(("127.0.0.1", None), id="none-port"),
        pytest.param(("", 1616), id="empty-host"),
        pytest.param((1616, "127.0.0.1"), id="swapped"),
        pytest.param((None, 1), id="none-host"),
        pytest.param(("/tmp", ""), id="empty-filename"),
        pytest.param(("/tmp", "a/b.sock"), id="filename-with-slash"),
        pytest.param(("/tmp", "a\0b"), id="filename-with-nul"),
        pytest.param(("/t\0mp", "a.sock"), id="dir-with-nul"),
        pytest.param(("", "a.sock"), id="empty-dir"),
        pytest.param(("h",), id="one-element"),
        pytest.param(("h", 1, 2), id="three-elements"),
        pytest.param((), id="empty-tuple"),
        pytest.param({"host": "h", "port": 1}, id="dict"),
        pytest.param({"h", 1}, id="set"),
        pytest.param((None, "a.sock"), id="none-dir"),
        pytest.param(1616, id="int"),
        pytest.param(b"tcp://h:1", id="bytes"),
        pytest.param((b"h", 1), id="bytes-host"),
    ],
)
def test_wrap_rejects_malformed(value: object) -> None:
    with pytest.raises(AddressError) as info:
        wrap_address(value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, tractor_reg.TractorRegError)


def test_port_bounds_are_inclusive() -> None:
    assert wrap_address(("h", 0)) == ("h", 0)
    assert wrap_address(("h", 65535)) == ("h", 65535)


# -- string forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("tcp://127.0.0.1:1616", TCPAddress("127.0.0.1", 1616)),
        ("tcp://localhost:0", TCPAddress("localhost", 0)),
        ("tcp://example.org:65535", TCPAddress("example.org", 65535)),
        ("tcp://[::1]:8080", TCPAddress("::1", 8080)),
        ("tcp://[2001:db8::5]:1", TCPAddress("2001:db8::5", 1)),
        ("uds:///tmp/d/registry@1616.sock", UDSAddress("/tmp/d", "registry@1616.sock")),
        (
            "uds:///run/user/1000/tractor_reg/a.sock",
            UDSAddress("/run/user/1000/tractor_reg", "a.sock"),
        ),
        ("uds:///x.sock", UDSAddress("/", "x.sock")),
    ],
)
def test_parse_and_format_round_trip(text: str, addr: tractor_reg.Address) -> None:
    parsed = parse_address(text)
    assert parsed == addr
    assert type(parsed) is type(addr)
    assert format_address(parsed) == text
    assert str(parsed) == text
    assert format_address(unwrap_address(addr)) == text
    assert format_address(text) == text
    assert wrap_address(text) == addr
    assert parse_address(format_address(addr)) == addr


def test_ipv6_formats_with_brackets() -> None:
    assert format_address(("::1", 1616)) == "tcp://[::1]:1616"
    addr = parse_address("tcp://[::1]:1616")
    assert isinstance(addr, TCPAddress)
    assert addr.host == "::1"


def test_uds_path_with_space_round_trips() -> None:
    addr = UDSAddress("/tmp/with space", "a b.sock")
    assert parse_address(format_address(addr)) == addr
    assert parse_address("uds:///tmp/with%20space/a%20b.sock") == addr


@pytest.mark.parametrize("directory", ["/tmp/a%41b", "/tmp/what?", "/tmp/no#1"])
def test_uds_path_with_url_special_chars_round_trips(directory: str) -> None:
    addr = UDSAddress(directory, "x.sock")
    assert parse_address(format_address(addr)) == addr


@pytest.mark.parametrize(
    "text",
    [
        # bad scheme
        pytest.param("http://127.0.0.1:1616", id="http-scheme"),
        pytest.param("udp://127.0.0.1:1616", id="udp-scheme"),
        pytest.param("127.0.0.1:1616", id="no-scheme"),
        pytest.param("", id="empty"),
        pytest.param("tcp:", id="scheme-only"),
        # missing / bad port
        pytest.param("tcp://127.0.0.1", id="missing-port"),
        pytest.param("tcp://127.0.0.1:", id="empty-port"),
        pytest.param("tcp://[::1]", id="ipv6-missing-port"),
        pytest.param("tcp://127.0.0.1:65536", id="port-out-of-range"),
        pytest.param("tcp://127.0.0.1:99999", id="port-way-out-of-range"),
        pytest.param("tcp://127.0.0.1:-1", id="negative-port"),
        pytest.param("tcp://127.0.0.1:http", id="named-port"),
        pytest.param("tcp://127.0.0.1:1.5", id="float-port"),
        pytest.param("tcp://:1616", id="missing-host"),
        pytest.param("tcp://[::1:1616", id="unclosed-bracket"),
        pytest.param("tcp://::1:1616", id="unbracketed-ipv6"),
        pytest.param("tcp://user:pw@127.0.0.1:1616", id="credentials"),
        pytest.param("tcp://127.0.0.1:1616/path", id="tcp-path"),
        # query / fragment
        pytest.param("tcp://127.0.0.1:1616?timeout=1", id="tcp-query"),
        pytest.param("tcp://127.0.0.1:1616#frag", id="tcp-fragment"),
        pytest.param("uds:///tmp/a.sock?mode=1", id="uds-query"),
        pytest.param("uds:///tmp/a.sock#frag", id="uds-fragment"),
        # uds: relative path, host, empty filename
        pytest.param("uds:relative/a.sock", id="uds-relative"),
        pytest.param("uds:a.sock", id="uds-bare-relative"),
        pytest.param("uds://tmp/a.sock", id="uds-two-slashes-is-a-host"),
        pytest.param("uds://localhost/tmp/a.sock", id="uds-with-host"),
        pytest.param("uds:///tmp/dir/", id="uds-empty-filename"),
        pytest.param("uds:///", id="uds-root-only"),
        pytest.param("uds://", id="uds-nothing"),
        pytest.param("uds:///tmp/a%00b.sock", id="uds-nul"),
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert isinstance(info.value, ValueError)
    assert str(info.value)  # a message that says what is wrong


@pytest.mark.parametrize("value", [None, 1616, b"tcp://127.0.0.1:1", ("127.0.0.1", 1)])
def test_parse_rejects_non_str(value: object) -> None:
    with pytest.raises(AddressError):
        parse_address(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["tcp://127.0.0.1", "ftp://x:1", ("h", True), None])
def test_format_rejects_malformed(value: object) -> None:
    with pytest.raises(AddressError):
        format_address(value)  # type: ignore[arg-type]


def test_scheme_is_case_insensitive() -> None:
    assert parse_address("TCP://127.0.0.1:1") == TCPAddress("127.0.0.1", 1)
    assert parse_address("UDS:///tmp/a.sock") == UDSAddress("/tmp", "a.sock")


def test_wrap_rejects_relative_uds_directory() -> None:
    with pytest.raises(AddressError):
        wrap_address(("relative/dir", "x.sock"))


# -- defaults --------------------------------------------------------------------------------


@pytest.fixture
def xdg_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="tr-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_default_tcp_registry_addr() -> None:
    addr = default_registry_addr("tcp")
    assert addr == ("127.0.0.1", 1616)
    assert type(addr) is TCPAddress
    assert format_address(addr) == "tcp://127.0.0.1:1616"


def test_default_uds_registry_addr_in_runtime_dir(xdg_runtime: str) -> None:
    addr = default_registry_addr("uds")
    assert type(addr) is UDSAddress
    assert addr == (os.path.join(xdg_runtime, "tractor_reg"), "registry@1616.sock")
    assert Path(addr.directory) == runtime_dir()
    mode = os.stat(addr.directory).st_mode
    assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700
    assert parse_address(format_address(addr)) == addr
    assert format_address(addr).endswith("/tractor_reg/registry@1616.sock")


def test_default_uds_registry_addr_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    addr = default_registry_addr("uds")
    assert isinstance(addr, UDSAddress)
    assert addr.filename == "registry@1616.sock"
    assert addr.directory == os.path.join(tempfile.gettempdir(), f"tractor_reg-{os.getuid()}")
    assert stat.S_IMODE(os.stat(addr.directory).st_mode) == 0o700
    assert os.stat(addr.directory).st_uid == os.getuid()


@pytest.mark.parametrize("transport", ["udp", "TCP", "", "unix"])
def test_default_registry_addr_unknown_transport(transport: str) -> None:
    with pytest.raises(ValueError, match="transport"):
        default_registry_addr(transport)


# -- prefer_addr -----------------------------------------------------------------------------


def test_prefer_addr_ranks_tiers_and_latest_first() -> None:
    registered: list[tractor_reg.AddressLike] = [
        (REMOTE_V4, 1),
        ("127.0.0.1", 2),
        ("/tmp/d", "first.sock"),
        (REMOTE_V4_B, 3),
        ("::1", 4),
        ("/tmp/d", "second.sock"),
        ("localhost", 5),
        (REMOTE_V6, 6),
    ]
    assert prefer_addr(registered) == [
        UDSAddress("/tmp/d", "second.sock"),
        UDSAddress("/tmp/d", "first.sock"),
        TCPAddress("localhost", 5),
        TCPAddress("::1", 4),
        TCPAddress("127.0.0.1", 2),
        TCPAddress(REMOTE_V6, 6),
        TCPAddress(REMOTE_V4_B, 3),
        TCPAddress(REMOTE_V4, 1),
    ]


def test_prefer_addr_accepts_strings_lists_and_iterables() -> None:
    given: list[tractor_reg.AddressLike] = [
        f"tcp://{REMOTE_V4}:1",
        ["127.0.0.1", 2],
        "uds:///tmp/d/a.sock",
    ]
    ranked = prefer_addr(iter(given))
    assert ranked == [("/tmp/d", "a.sock"), ("127.0.0.1", 2), (REMOTE_V4, 1)]
    expected: list[type[tractor_reg.Address]] = [UDSAddress, TCPAddress, TCPAddress]
    assert [type(a) for a in ranked] == expected


def test_prefer_addr_single_and_order_stability() -> None:
    assert prefer_addr([("127.0.0.1", 1)]) == [TCPAddress("127.0.0.1", 1)]
    remote = [(REMOTE_V4, p) for p in range(1, 6)]
    assert prefer_addr(remote) == [TCPAddress(REMOTE_V4, p) for p in range(5, 0, -1)]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_prefer_addr_local_beats_remote(host: str) -> None:
    assert prefer_addr([(host, 2), (REMOTE_V4, 1)])[0] == (host, 2)
    # Even when the remote one was registered later.
    assert prefer_addr([(host, 1), (REMOTE_V4, 2)])[0] == (host, 1)
    assert prefer_addr([(host, 1), (REMOTE_V6, 2)])[0] == (host, 1)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", REMOTE_V4])
def test_prefer_addr_uds_beats_any_tcp(host: str) -> None:
    assert prefer_addr([("/tmp/d", "a.sock"), (host, 1)])[0] == ("/tmp/d", "a.sock")


def test_prefer_addr_unresolvable_name_is_remote() -> None:
    ranked = prefer_addr([("127.0.0.1", 1), ("registrar.example.invalid", 2)])
    assert ranked == [("127.0.0.1", 1), ("registrar.example.invalid", 2)]


@pytest.mark.parametrize("addrs", [[], (), iter([])])
def test_prefer_addr_empty_is_an_error(addrs: object) -> None:
    with pytest.raises(AddressError, match="at least one"):
        prefer_addr(addrs)  # type: ignore[arg-type]


def test_prefer_addr_invalid_member_is_an_error() -> None:
    with pytest.raises(AddressError):
        prefer_addr([("127.0.0.1", 1), ("127.0.0.1", True)])
    with pytest.raises(AddressError):
        prefer_addr([("127.0.0.1", 1), "http://x:1"])


# -- this host's interface addresses count as local -----------------------------------------

_SIOCGIFADDR = 0x8915


def _bindable(ip: str) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((ip, 0))
    except OSError:
        return False
    return True


def _interface_addresses() -> list[str]:
    """Non-loopback addresses assigned to this host's interfaces (Linux), bind-verified."""
    found: list[str] = []
    for _, ifname in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                packed = fcntl.ioctl(
                    sock.fileno(), _SIOCGIFADDR, struct.pack("256s", ifname.encode()[:15])
                )
            except OSError:
                continue
        found.append(socket.inet_ntoa(packed[20:24]))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as fh:
        for line in fh:
            raw = line.split()[0]
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    usable = []
    for ip in found:
        parsed = ipaddress.ip_address(ip)
        if parsed.is_loopback or parsed.is_link_local or parsed.is_unspecified:
            continue
        if ip not in usable and _bindable(ip):
            usable.append(ip)
    return usable


def _resolver_addresses() -> set[str]:
    """What the host name resolves to (the only source is_local_host consults today)."""
    found: set[str] = set()
    for name in {socket.gethostname(), socket.getfqdn(), "localhost"}:
        with contextlib.suppress(OSError):
            found.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
    return found


def _interface_params() -> list[object]:
    addrs = _interface_addresses()
    if not addrs:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no non-loopback interface"))]
    return [pytest.param(ip) for ip in addrs]


@pytest.mark.parametrize("ip", _interface_params())
def test_prefer_addr_this_hosts_interface_is_local(ip: str) -> None:
    ranked = prefer_addr([(ip, 1), (REMOTE_V4, 2)])
    assert ranked[0] == (ip, 1)
    # ...but still behind UDS.
    assert prefer_addr([("/tmp/d", "a.sock"), (ip, 1)])[0] == ("/tmp/d", "a.sock")
