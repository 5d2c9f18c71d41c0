"""Upstream's address objects and multiaddr endpoints (issue 13, items 5 and 6).

Unit checks of ``TCPAddress``/``UDSAddress``'s upstream surface, ``wrap_address`` forms,
``mk_maddr``/``parse_maddr``/``parse_endpoints`` and every bad input; then real processes:
roots, children and separate programs that meet through ``/ip4/...`` and ``/unix/...``
registry addresses, and the CLI's ``--listen``/``--registry`` given multiaddrs.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

import tractor_reg
from tests.compat_progs import addrs_find
from tests.conftest import free_port
from tests.procs import REPO, joiner_argv, python, registrar_argv, spawn, wait_ready
from tests.rpc_targets.hostile import client
from tractor_reg import AddressError, TCPAddress, UDSAddress, wrap_address
from tractor_reg._msg import Error

PROG = "tests.compat_progs.addrs_find"
ENV_REGISTRY = "TRACTOR_REG_REGISTRY_ADDRS"
SUPPORTED_HINT = "expected /ip4/ADDR/tcp/PORT"


@pytest.fixture
def xdg_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``$XDG_RUNTIME_DIR``; the runtime dir is ``<it>/tractor_reg``."""
    path = tempfile.mkdtemp(prefix="tr-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", path)
    try:
        yield Path(path, "tractor_reg")
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _maddr(addr: TCPAddress) -> str:
    return f"/ip4/{addr.host}/tcp/{addr.port}"


# -- TCPAddress ------------------------------------------------------------------------------


def test_tcp_address_upstream_surface() -> None:
    addr = TCPAddress("127.0.0.1", 1616)
    assert TCPAddress.proto_key == "tcp" and addr.proto_key == "tcp"
    assert TCPAddress.def_bindspace == "127.0.0.1"
    assert addr.bindspace == "127.0.0.1" and addr.domain == "127.0.0.1"
    plain = addr.unwrap()
    assert type(plain) is tuple and plain == ("127.0.0.1", 1616)
    # still a tuple: equal, hashable and encoded as one
    assert addr == ("127.0.0.1", 1616) and hash(addr) == hash(plain)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(addr)) == ["127.0.0.1", 1616]
    assert TCPAddress(host="::1", port=2) == ("::1", 2)
    assert str(addr) == "tcp://127.0.0.1:1616"


def test_tcp_get_random_and_get_root() -> None:
    assert TCPAddress.get_random() == ("127.0.0.1", 0)
    assert TCPAddress.get_random(bindspace="::1") == ("::1", 0)
    assert type(TCPAddress.get_random()) is TCPAddress
    root = TCPAddress.get_root()
    assert type(root) is TCPAddress and root == ("127.0.0.1", 1616)
    assert root == tractor_reg.default_registry_addr("tcp")
    # what get_random() gives binds: the OS picks the port
    host, port = TCPAddress.get_random().unwrap()
    with socket.socket() as sock:
        sock.bind((host, port))
        assert sock.getsockname()[1] != 0


@pytest.mark.parametrize(
    "value",
    [("127.0.0.1", 5), ["127.0.0.1", 5], "tcp://127.0.0.1:5", "/ip4/127.0.0.1/tcp/5"],
)
def test_tcp_from_addr(value: object) -> None:
    addr = TCPAddress.from_addr(value)
    assert type(addr) is TCPAddress and addr == ("127.0.0.1", 5)


@pytest.mark.parametrize(
    "value",
    [("/tmp", "a.sock"), "/unix/tmp/a.sock", ("127.0.0.1", True), None, "/ip4/127.0.0.1/udp/5"],
)
def test_tcp_from_addr_rejects(value: object) -> None:
    with pytest.raises(AddressError):
        TCPAddress.from_addr(value)


@pytest.mark.parametrize(
    ("addr", "valid"),
    [
        (TCPAddress("127.0.0.1", 1616), True),
        (TCPAddress("::1", 1), True),
        (TCPAddress("203.0.113.5", 65535), True),
        (TCPAddress("localhost", 80), True),
        (TCPAddress("127.0.0.1", 0), False),
        (TCPAddress("127.0.0.1", 65536), False),
        (TCPAddress("0.0.0.0", 1616), False),
        (TCPAddress("::", 1616), False),
        (TCPAddress("224.0.0.1", 1616), False),
        (TCPAddress("240.0.0.1", 1616), False),
        (TCPAddress("", 1616), False),
    ],
)
def test_tcp_is_valid(addr: TCPAddress, valid: bool) -> None:
    assert addr.is_valid is valid


# -- UDSAddress ------------------------------------------------------------------------------


def test_uds_upstream_keywords_and_paths() -> None:
    by_kw = UDSAddress(filedir="/run/x", filename="a.sock")
    by_pos = UDSAddress("/run/x", "a.sock")
    by_path = UDSAddress(filedir=Path("/run/x"), filename=Path("a.sock"))
    assert by_kw == by_pos == by_path == ("/run/x", "a.sock")
    assert all(type(a.directory) is str and type(a.filename) is str for a in (by_kw, by_path))
    assert UDSAddress.proto_key == "uds" and by_kw.proto_key == "uds"
    assert by_kw.sockpath == Path("/run/x/a.sock") and isinstance(by_kw.sockpath, Path)
    assert by_kw.bindspace == Path("/run/x") and by_kw.filedir == Path("/run/x")
    plain = by_kw.unwrap()
    assert type(plain) is tuple and plain == ("/run/x", "a.sock")
    assert str(by_kw) == "uds:///run/x/a.sock"


def test_uds_constructor_misuse() -> None:
    with pytest.raises(TypeError, match="directory once"):
        UDSAddress("/a", "b.sock", filedir="/c")
    with pytest.raises(TypeError, match="needs a filename"):
        UDSAddress(filedir="/a")


def test_uds_without_directory_is_in_runtime_dir(xdg_runtime: Path) -> None:
    addr = UDSAddress(filename="x.sock")
    assert addr == (str(xdg_runtime), "x.sock")
    assert UDSAddress.def_bindspace == xdg_runtime
    assert isinstance(UDSAddress.def_bindspace, Path)


def test_uds_maybe_pid_is_not_part_of_the_value() -> None:
    with_pid = UDSAddress(filedir="/run/x", filename="a.sock", maybe_pid=4242)
    positional = UDSAddress("/run/x", "a.sock", 4242)
    bare = UDSAddress("/run/x", "a.sock")
    assert with_pid.maybe_pid == 4242 and positional.maybe_pid == 4242
    assert bare.maybe_pid is None
    assert with_pid == bare == ("/run/x", "a.sock")
    assert hash(with_pid) == hash(bare) == hash(("/run/x", "a.sock"))
    by_value: dict[object, int] = {with_pid: 1}
    assert by_value[("/run/x", "a.sock")] == 1
    assert with_pid.unwrap() == ("/run/x", "a.sock")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(with_pid)) == ["/run/x", "a.sock"]
    assert json.loads(msgspec.json.encode(with_pid)) == ["/run/x", "a.sock"]
    assert repr(with_pid) == "UDSAddress(directory='/run/x', filename='a.sock', maybe_pid=4242)"
    assert repr(bare) == "UDSAddress(directory='/run/x', filename='a.sock')"
    # copies keep it; _replace (a new value) drops it
    assert pickle.loads(pickle.dumps(with_pid)).maybe_pid == 4242
    assert copy.deepcopy(with_pid).maybe_pid == 4242
    assert with_pid._replace(filename="b.sock").maybe_pid is None
    assert wrap_address(with_pid) is with_pid


def test_uds_get_random_is_fresh_and_bindable(xdg_runtime: Path, uds_dir: str) -> None:
    first, second = UDSAddress.get_random(), UDSAddress.get_random()
    assert first != second
    assert first.bindspace == xdg_runtime == Path(first.directory)
    assert first.maybe_pid == os.getpid()
    assert first.filename.endswith(f"@{os.getpid()}.sock")
    assert first.is_valid
    in_dir = UDSAddress.get_random(bindspace=uds_dir)
    assert in_dir.directory == uds_dir
    assert UDSAddress.get_random(Path(uds_dir)).directory == uds_dir
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(in_dir.sockpath))
        assert in_dir.sockpath.exists()


def test_uds_get_random_rejects_bad_bindspace() -> None:
    with pytest.raises(AddressError, match="absolute"):
        UDSAddress.get_random("relative/dir")
    with pytest.raises(AddressError, match="limit is 107"):
        UDSAddress.get_random("/" + "d" * 100)


def test_uds_get_root(xdg_runtime: Path) -> None:
    root = UDSAddress.get_root()
    assert type(root) is UDSAddress
    assert root == (str(xdg_runtime), "registry@1616.sock")
    assert root == tractor_reg.default_registry_addr("uds")


@pytest.mark.parametrize(
    "value",
    [
        ("/run/x", "a.sock"),
        [Path("/run/x"), "a.sock"],
        ("/run/x", Path("a.sock")),
        Path("/run/x/a.sock"),
        "/run/x/a.sock".join(["uds://", ""]),
        "/unix/run/x/a.sock",
    ],
)
def test_uds_from_addr(value: object) -> None:
    addr = UDSAddress.from_addr(value)
    assert type(addr) is UDSAddress and addr == ("/run/x", "a.sock")


@pytest.mark.parametrize(
    "value", [("127.0.0.1", 1), "/ip4/127.0.0.1/tcp/1", Path("rel.sock"), ("/d", "")]
)
def test_uds_from_addr_rejects(value: object) -> None:
    with pytest.raises(AddressError):
        UDSAddress.from_addr(value)


@pytest.mark.parametrize(
    ("addr", "valid"),
    [
        (UDSAddress("/run/x", "a.sock"), True),
        (UDSAddress("run/x", "a.sock"), False),
        (UDSAddress("/run/x", "a/b.sock"), False),
        (UDSAddress("/run/x", ""), False),
        (UDSAddress("/run/x", "a\0.sock"), False),
        (UDSAddress("/" + "d" * 120, "a.sock"), False),
    ],
)
def test_uds_is_valid(addr: UDSAddress, valid: bool) -> None:
    assert addr.is_valid is valid


# -- wrap_address: every form upstream takes -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (("127.0.0.1", 1616), TCPAddress("127.0.0.1", 1616)),
        (["::1", 2], TCPAddress("::1", 2)),
        (("/run/x", "a.sock"), UDSAddress("/run/x", "a.sock")),
        ((Path("/run/x"), "a.sock"), UDSAddress("/run/x", "a.sock")),
        ([Path("/run/x"), Path("a.sock")], UDSAddress("/run/x", "a.sock")),
        (Path("/run/x/a.sock"), UDSAddress("/run/x", "a.sock")),
        ("tcp://127.0.0.1:7", TCPAddress("127.0.0.1", 7)),
        ("uds:///run/x/a.sock", UDSAddress("/run/x", "a.sock")),
        ("/ip4/127.0.0.1/tcp/1616", TCPAddress("127.0.0.1", 1616)),
        ("/ip4/127.0.0.1/tcp/0", TCPAddress("127.0.0.1", 0)),
        ("/ip6/::1/tcp/1616", TCPAddress("::1", 1616)),
        ("/ip6/0:0::1/tcp/9", TCPAddress("::1", 9)),
        ("/unix/run/x/a.sock", UDSAddress("/run/x", "a.sock")),
        ("/unix//run//x/a.sock", UDSAddress("/run/x", "a.sock")),
        ("/unix/tmp/with space/%41@1.sock", UDSAddress("/tmp/with space", "%41@1.sock")),
    ],
)
def test_wrap_takes_every_form(value: object, want: tractor_reg.Address) -> None:
    got = wrap_address(value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("value", [None, [None, None], (None, None)])
def test_wrap_none_is_the_default_registry(value: object) -> None:
    got = wrap_address(value)
    assert type(got) is TCPAddress and got == ("127.0.0.1", 1616)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param((Path("/run/x"), 1), id="path-with-port"),
        pytest.param(Path("relative/a.sock"), id="relative-path"),
        pytest.param(Path("/"), id="path-is-root"),
        pytest.param(("/run/x", Path("a/b.sock")), id="path-filename-with-slash"),
        pytest.param((Path("relative"), "a.sock"), id="relative-path-dir"),
        pytest.param((None, "a.sock"), id="none-dir"),
        pytest.param(("127.0.0.1", None), id="none-port"),
        pytest.param([None], id="one-none"),
    ],
)
def test_wrap_rejects_bad_new_forms(value: object) -> None:
    with pytest.raises(AddressError) as info:
        wrap_address(value)
    assert str(info.value)


def test_wrap_error_lists_the_forms() -> None:
    with pytest.raises(AddressError) as info:
        wrap_address(3.5)
    message = str(info.value)
    assert "3.5" in message
    for form in ("(host, port)", "tcp://", "uds://", "/ip4/", "/unix/"):
        assert form in message


def test_none_is_not_an_address_where_one_must_be_named() -> None:
    # formatting and ranking never invent the default address for a missing one
    with pytest.raises(AddressError):
        tractor_reg.format_address(None)  # type: ignore[arg-type]
    with pytest.raises(AddressError):
        tractor_reg.prefer_addr([None])  # type: ignore[list-item]


# -- multiaddrs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        (TCPAddress("127.0.0.1", 1616), "/ip4/127.0.0.1/tcp/1616"),
        (TCPAddress("::1", 1616), "/ip6/::1/tcp/1616"),
        (TCPAddress("10.1.2.3", 0), "/ip4/10.1.2.3/tcp/0"),
        (UDSAddress("/run/user/1000/tractor_reg", "registry@1616.sock"),
         "/unix/run/user/1000/tractor_reg/registry@1616.sock"),
        (UDSAddress("/tmp/with space", "a%41.sock"), "/unix/tmp/with space/a%41.sock"),
        (UDSAddress("/", "top.sock"), "/unix/top.sock"),
    ],
)  # fmt: skip
def test_mk_maddr_and_parse_maddr_round_trip(addr: tractor_reg.Address, text: str) -> None:
    maddr = tractor_reg.mk_maddr(addr)
    assert str(maddr) == text
    assert tractor_reg.parse_maddr(text) == addr
    assert tractor_reg.parse_maddr(maddr) == addr
    assert type(tractor_reg.parse_maddr(text)) is type(addr)
    # the other forms of the same address give the same multiaddr
    assert str(tractor_reg.mk_maddr(addr.unwrap())) == text
    assert str(tractor_reg.mk_maddr(str(addr))) == text
    assert str(tractor_reg.mk_maddr(text)) == text
    # a Multiaddr object is an address form too
    assert wrap_address(maddr) == addr
    assert [p.name for p in maddr.protocols()] == (
        ["unix"] if isinstance(addr, UDSAddress) else [text.split("/")[1], "tcp"]
    )


def test_mk_maddr_needs_an_ip_host() -> None:
    with pytest.raises(AddressError, match="IPv4 or IPv6 address, not a name"):
        tractor_reg.mk_maddr(("localhost", 1616))
    with pytest.raises(AddressError):
        tractor_reg.mk_maddr(("127.0.0.1", True))


BAD_MADDRS = [
    pytest.param("/ip4/1.2.3.4/udp/5", "unsupported", id="udp"),
    pytest.param("/dns4/localhost/tcp/1616", "unsupported", id="dns4"),
    pytest.param("/dns/localhost/tcp/1616", "unsupported", id="dns"),
    pytest.param("/ip4/999.1.1.1/tcp/1", "malformed", id="bad-ip4"),
    pytest.param("/ip4/127.1/tcp/1", "malformed", id="short-ip4"),
    pytest.param("/ip6/::1::2/tcp/1", "malformed", id="bad-ip6"),
    pytest.param("/ip4/127.0.0.1/tcp/99999", "malformed", id="port-too-big"),
    pytest.param("/ip4/127.0.0.1/tcp/-1", "malformed", id="negative-port"),
    pytest.param("/ip4/127.0.0.1/tcp/http", "malformed", id="named-port"),
    pytest.param("/ip4/127.0.0.1/tcp", "malformed", id="missing-port"),
    pytest.param("/ip4/127.0.0.1", "unsupported", id="no-tcp"),
    pytest.param("/ip4", "malformed", id="ip4-only"),
    pytest.param("/tcp/1616", "unsupported", id="tcp-only"),
    pytest.param("/ip4/127.0.0.1/tcp/1/tcp/2", "unsupported", id="two-tcp"),
    pytest.param("/ip4/127.0.0.1/tcp/1/unix/x", "unsupported", id="tcp-then-unix"),
    pytest.param(
        "/ip4/127.0.0.1/tcp/1616/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
        "unsupported",
        id="trailing-p2p",
    ),
    pytest.param("/unix", "malformed", id="unix-no-path"),
    pytest.param("/unix/tmp/dir/", "directory", id="unix-dir"),
    pytest.param("/unix/tmp/a\0b.sock", "plain file name", id="unix-nul"),
    pytest.param("/", "unsupported", id="slash"),
    pytest.param("//", "unsupported", id="two-slashes"),
    pytest.param("/garbage", "malformed", id="garbage"),
    pytest.param("/IP4/127.0.0.1/tcp/1", "malformed", id="upper-case"),
    pytest.param("/tmp/a.sock", "malformed", id="bare-path"),
]


@pytest.mark.parametrize(("text", "kind"), BAD_MADDRS)
def test_bad_multiaddrs_are_one_clear_error(text: str, kind: str) -> None:
    for parse in (tractor_reg.parse_maddr, wrap_address, tractor_reg.parse_address):
        with pytest.raises(AddressError) as info:
            parse(text)
        message = str(info.value)
        assert repr(text) in message, message
        assert kind in message, message
        assert isinstance(info.value, ValueError)
        if kind == "malformed":
            # raised from the multiaddr package's own error
            assert info.value.__cause__ is not None
            assert type(info.value.__cause__).__module__.startswith("multiaddr")
        if kind in ("malformed", "unsupported"):
            assert SUPPORTED_HINT in message


def test_parse_maddr_rejects_non_strings() -> None:
    with pytest.raises(AddressError):
        tractor_reg.parse_maddr(b"/ip4/127.0.0.1/tcp/1")  # type: ignore[arg-type]


def test_garbage_string_names_multiaddr_as_a_form() -> None:
    with pytest.raises(AddressError, match=r"unknown address scheme.*/ip4/ADDR/tcp/PORT"):
        wrap_address("garbage")


# -- parse_endpoints -------------------------------------------------------------------------


def test_parse_endpoints_wraps_every_entry() -> None:
    table: tractor_reg.discovery.EndpointsTable = {
        "registry": ["/ip4/127.0.0.1/tcp/1616", "/unix/run/x/registry.sock"],
        "svc": [("127.0.0.1", 1617), ["/run/x", "svc.sock"], "tcp://[::1]:9"],
        "pre": [TCPAddress("127.0.0.1", 5)],
        "empty": [],
    }
    parsed = tractor_reg.parse_endpoints(table)
    assert parsed == {
        "registry": [TCPAddress("127.0.0.1", 1616), UDSAddress("/run/x", "registry.sock")],
        "svc": [
            TCPAddress("127.0.0.1", 1617),
            UDSAddress("/run/x", "svc.sock"),
            TCPAddress("::1", 9),
        ],
        "pre": [TCPAddress("127.0.0.1", 5)],
        "empty": [],
    }
    assert list(parsed) == list(table) and parsed is not table
    assert type(parsed["registry"][1]) is UDSAddress
    assert parsed["pre"][0] is table["pre"][0]


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"svc": ["/ip4/1.2.3.4/udp/5"]}, r"endpoints of 'svc': unsupported multiaddr"),
        ({"svc": ["/ip4/127.0.0.1/tcp/1", "nonsense"]}, r"endpoints of 'svc': unknown address"),
        ({"svc": "/ip4/127.0.0.1/tcp/1"}, r"endpoints of 'svc' must be a list.*got str"),
        ({"svc": None}, r"endpoints of 'svc' must be a list"),
        ([("svc", ["/ip4/127.0.0.1/tcp/1"])], r"takes a mapping.*got list"),
    ],
)
def test_parse_endpoints_bad_input(table: Any, match: str) -> None:
    with pytest.raises(AddressError, match=match) as info:
        tractor_reg.parse_endpoints(table)
    if "unsupported" in match or "unknown" in match:
        assert isinstance(info.value.__cause__, AddressError)


# -- import paths and import cost ------------------------------------------------------------


def test_upstream_import_path() -> None:
    from tractor_reg.discovery import mk_maddr, parse_endpoints, parse_maddr

    assert mk_maddr is tractor_reg.mk_maddr
    assert parse_maddr is tractor_reg.parse_maddr
    assert parse_endpoints is tractor_reg.parse_endpoints
    assert tractor_reg.discovery.parse_maddr is parse_maddr
    for name in ("mk_maddr", "parse_maddr", "parse_endpoints"):
        assert name in tractor_reg.__all__


def test_import_does_not_load_the_multiaddr_package() -> None:
    code = (
        "import sys, tractor_reg, tractor_reg.discovery\n"
        "assert 'multiaddr' not in sys.modules, 'imported at import'\n"
        "tractor_reg.wrap_address('/ip4/127.0.0.1/tcp/1')\n"
        "assert 'multiaddr' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


# -- real processes --------------------------------------------------------------------------


async def test_tcp_multiaddr_registry_found_from_children_and_other_programs(
    reg_addr: TCPAddress,
) -> None:
    maddr = _maddr(reg_addr)
    with trio.fail_after(45):
        async with tractor_reg.open_root_actor(
            name="maddr_root", registry_addrs=[maddr], enable_modules=[PROG]
        ) as root:
            assert root.is_registrar
            assert root.reg_addrs == [reg_addr] and root.accept_addrs == [reg_addr]
            async with tractor_reg.get_registry(maddr) as local:
                assert isinstance(local, tractor_reg.LocalPortal)
            async with tractor_reg.open_nursery() as an:
                await an.start_actor("maddr_svc", enable_modules=[PROG])
                seeker = await an.start_actor("maddr_seeker", enable_modules=[PROG])
                # a child finds a sibling and the root through the multiaddr
                found = await seeker.run(addrs_find.find_via, name="maddr_svc", registry=maddr)
                assert found is not None and found[0] == "maddr_svc"
                assert await seeker.run(addrs_find.find_via, name="maddr_root", registry=maddr) == [
                    "maddr_root",
                    root.uuid,
                ]
                # another program, given the multiaddr on its command line ...
                with spawn(python("-m", PROG, "maddr_svc", "--registry", maddr)) as other:
                    assert (await other.await_line("FOUND")).startswith("FOUND maddr_svc ")
                    assert int((await other.await_line("TABLE")).split()[1]) >= 3
                    assert await other.await_exit() == 0, other.stderr_tail()
                # ... or in $TRACTOR_REG_REGISTRY_ADDRS
                with spawn(python("-m", PROG, "maddr_root"), env={ENV_REGISTRY: maddr}) as other:
                    assert await other.await_line("FOUND") == f"FOUND maddr_root {root.uuid}"
                    assert await other.await_exit() == 0, other.stderr_tail()
                # root-side lookups through the multiaddr (and its Multiaddr object)
                async with tractor_reg.find_actor("maddr_svc", registry_addrs=[maddr]) as portal:
                    assert portal is not None
                    assert (await portal.run(addrs_find.whoami))[0] == "maddr_svc"
                # two address strings are a list of two, not one (dir, file) pair
                async with tractor_reg.find_actor(
                    "maddr_svc", registry_addrs=[maddr, str(reg_addr)]
                ) as portal:
                    assert portal is not None
                maddr_obj = tractor_reg.mk_maddr(reg_addr)
                async with tractor_reg.find_actor(
                    "maddr_svc", registry_addrs=[maddr_obj]
                ) as portal:
                    assert portal is not None
                await an.cancel()


async def test_unix_multiaddr_registry(uds_dir: str) -> None:
    sock = UDSAddress(uds_dir, "reg.sock")
    maddr = f"/unix{uds_dir}/reg.sock"
    assert str(tractor_reg.mk_maddr(sock)) == maddr
    with trio.fail_after(45):
        async with tractor_reg.open_root_actor(
            name="unix_root", registry_addrs=[maddr], enable_modules=[PROG]
        ) as root:
            assert root.is_registrar and root.accept_addrs == [sock]
            assert type(root.accept_addrs[0]) is UDSAddress
            with spawn(python("-m", PROG, "unix_root", "--registry", maddr)) as other:
                bound = (await other.await_line("BOUND")).split()[1:]
                assert bound and all(b.startswith("uds://") for b in bound)
                assert await other.await_line("FOUND") == f"FOUND unix_root {root.uuid}"
                assert await other.await_exit() == 0, other.stderr_tail()


async def test_bind_addresses_take_multiaddrs_and_get_random(reg_addr: TCPAddress) -> None:
    maddr = _maddr(reg_addr)
    with spawn(registrar_argv(maddr)) as reg:
        wait_ready(reg)
        with trio.fail_after(30):
            # a multiaddr bind address with port 0 in another program
            argv = python(
                "-m", PROG, "nobody", "--registry", maddr, "--bind", "/ip4/127.0.0.1/tcp/0"
            )
            with spawn(argv) as other:
                bound = (await other.await_line("BOUND")).split()[1:]
                assert len(bound) == 1
                addr = tractor_reg.parse_address(bound[0])
                assert isinstance(addr, TCPAddress)
                assert addr.host == "127.0.0.1" and addr.port != 0
                assert await other.await_line("NONE") == "NONE"
                assert await other.await_exit() == 0, other.stderr_tail()
            # get_random() as a bind address, in this process
            async with tractor_reg.open_root_actor(
                name="random_bind",
                registry_addrs=[maddr],
                accept_addrs=[TCPAddress.get_random()],
            ) as actor:
                assert not actor.is_registrar
                [bound_addr] = actor.accept_addrs
                assert bound_addr.host == "127.0.0.1" and bound_addr.port != 0  # type: ignore[union-attr]
                async with tractor_reg.find_actor(
                    "random_bind", registry_addrs=[tractor_reg.mk_maddr(reg_addr)]
                ) as portal:
                    assert portal is not None


async def test_uds_get_random_as_bind_address(uds_dir: str) -> None:
    reg_maddr = f"/unix{uds_dir}/reg.sock"
    with spawn(registrar_argv(reg_maddr)) as reg:
        wait_ready(reg)
        bind = UDSAddress.get_random(bindspace=uds_dir)
        with trio.fail_after(30):
            async with tractor_reg.open_root_actor(
                name="uds_random", registry_addrs=[reg_maddr], accept_addrs=[bind]
            ) as actor:
                assert actor.accept_addrs == [bind]
                assert bind.sockpath.exists()
                async with tractor_reg.find_actor(
                    "uds_random", registry_addrs=[reg_maddr], enable_transports=["uds"]
                ) as portal:
                    assert portal is not None


@pytest.mark.parametrize(
    "bad", ["/ip4/1.2.3.4/udp/5", "/dns4/localhost/tcp/1616", "/ip4/127.0.0.1/tcp/99999"]
)
async def test_bad_multiaddrs_at_the_runtime_entry_points(
    bad: str, reg_addr: TCPAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(20):
        with pytest.raises(AddressError, match="multiaddr"):
            async with tractor_reg.open_root_actor(registry_addrs=[bad]):
                pass
        monkeypatch.setenv(ENV_REGISTRY, bad)
        with pytest.raises(AddressError, match="multiaddr"):
            async with tractor_reg.open_root_actor():
                pass
        monkeypatch.delenv(ENV_REGISTRY)
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            with pytest.raises(AddressError, match="multiaddr"):
                async with tractor_reg.find_actor("x", registry_addrs=[bad]):
                    pass
            with pytest.raises(AddressError, match="multiaddr"):
                async with tractor_reg.get_registry(bad):
                    pass


async def test_registrar_refuses_none_for_an_address(reg_addr: TCPAddress) -> None:
    """wrap_address(None) means the default; a peer's ``None`` address is still refused."""
    with trio.fail_after(15):
        async with (
            tractor_reg.open_root_actor(registry_addrs=[reg_addr]),
            client(reg_addr, "nonepeer") as peer,
        ):
            reply = await peer.call(
                "self", "register_actor", uid=["nonepeer", "nonepeer-uuid"], addr=[None]
            )
            assert isinstance(reply, Error) and reply.type_name == "InvalidRequest", reply


# -- the CLI ---------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full["PYTHONPATH"] = REPO + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tractor_reg", *args],
        cwd=REPO,
        env=full,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stderr)
    return result.stdout


def _usage_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.args, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("tractor-reg: error:")]
    return line


def test_cli_listen_and_registry_take_multiaddrs() -> None:
    port = free_port()
    maddr = f"/ip4/127.0.0.1/tcp/{port}"
    with spawn(registrar_argv(maddr)) as server:
        assert wait_ready(server) == f"READY tcp://127.0.0.1:{port} backend=memory://"
        with spawn(joiner_argv("maddr_cli", maddr, ttl=120)) as joiner:
            joiner.wait_line("READY")
            entries = json.loads(_ok(_cli("ls", "--registry", maddr, "--json")))
            assert "maddr_cli" in {e["name"] for e in entries}
            from_env = _ok(_cli("find", "maddr_cli", "--json", env={ENV_REGISTRY: maddr}))
            assert "maddr_cli" in from_env
            table = _ok(_cli("ls", "--registry", f"tcp://127.0.0.1:{port}"))
            assert "maddr_cli" in table


def test_cli_ip6_and_unix_multiaddrs(uds_dir: str) -> None:
    port = free_port()
    ip6 = f"/ip6/::1/tcp/{port}"
    unix = f"/unix{uds_dir}/cli.sock"
    with spawn(registrar_argv(ip6, unix)) as server:
        line = wait_ready(server)
        assert f"tcp://[::1]:{port}" in line and f"uds://{uds_dir}/cli.sock" in line
        with spawn(joiner_argv("maddr_cli6", ip6, ttl=120)) as joiner:
            joiner.wait_line("READY")
            for reg in (ip6, unix):
                entries = json.loads(_ok(_cli("ls", "--registry", reg, "--json")))
                assert "maddr_cli6" in {e["name"] for e in entries}, reg


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["ls", "--registry", "/ip4/1.2.3.4/udp/5"], "argument --registry: unsupported multiaddr"),
        (["find", "x", "--registry", "/ip4/999.1.1.1/tcp/1"], "argument --registry: malformed"),
        (["serve", "--listen", "/dns4/localhost/tcp/1616"], "argument --listen: unsupported"),
        (["serve", "--listen", "/ip4/127.0.0.1/tcp/99999"], "argument --listen: malformed"),
        (["serve", "--listen", "/unix/tmp/"], "argument --listen: multiaddr"),
    ],
)
def test_cli_bad_multiaddrs_are_usage_errors(argv: list[str], expect: str) -> None:
    line = _usage_error(_cli(*argv))
    assert expect in line, line
    assert argv[-1] in line


def test_cli_bad_multiaddr_in_the_environment() -> None:
    line = _usage_error(_cli("ls", env={ENV_REGISTRY: "/ip4/127.0.0.1/udp/5"}))
    assert f"${ENV_REGISTRY}: unsupported multiaddr '/ip4/127.0.0.1/udp/5'" in line


def test_cli_help_names_the_multiaddr_forms() -> None:
    assert "/ip4/ADDR/tcp/PORT" in _ok(_cli("serve", "--help"))
    assert "/unix/PATH" in _ok(_cli("ls", "--help"))


def test_cli_import_takes_multiaddrs_but_not_null(tmp_path: Path) -> None:
    import time

    expires = time.time() + 600
    good = {"name": "m", "uuid": "u1", "addrs": ["/ip4/127.0.0.1/tcp/5001"], "expires_at": expires}
    null = {"name": "n", "uuid": "u2", "addrs": [None], "expires_at": expires}
    dump = tmp_path / "in.jsonl"
    dump.write_text(json.dumps(good) + "\n" + json.dumps(null) + "\n")
    target = f"sqlite:///{tmp_path}/t.db"
    refused = _cli("import", str(dump), "--backend", target)
    assert refused.returncode == 1 and f"{dump}:2: bad line:" in refused.stderr
    _ok(_cli("import", str(dump), "--backend", target, "--skip-bad"))
    exported = [json.loads(ln) for ln in _ok(_cli("export", "--backend", target)).splitlines()]
    assert [(e["name"], e["addrs"]) for e in exported] == [("m", ["tcp://127.0.0.1:5001"])]
