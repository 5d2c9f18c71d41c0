"""The wire protocol and hostile peers, against a real registrar running in this process.

Each test boots a registrar with ``open_root_actor`` (nothing listens at the fresh registry
address, so this root becomes the registrar), talks to it over raw sockets with
hand-crafted frames, and then checks two things: the misbehaving peer got a clear answer
(and lost only its own channel), and the registrar still serves a fresh well-behaved client
with its table unchanged except for legitimate writes.
"""

from __future__ import annotations

import math
import uuid as uuidlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

import tractor_reg
from tests.rpc_targets import funcs
from tests.rpc_targets.hostile import RawPeer, client, fake_actor, frame, hello, raw_peer
from tractor_reg._msg import Call, CancelCall, Error, Handshake, Return, encode

FUNCS = funcs.__name__
HANDSHAKE_TIMEOUT = 0.5


# -- helpers -------------------------------------------------------------------------------


@asynccontextmanager
async def registrar(addr: tractor_reg.Address, **kwargs: Any) -> AsyncIterator[tractor_reg.Actor]:
    kwargs.setdefault("handshake_timeout", HANDSHAKE_TIMEOUT)
    kwargs.setdefault("probe_timeout", 0.5)
    kwargs.setdefault("enable_modules", [FUNCS])
    async with tractor_reg.open_root_actor(registry_addrs=[addr], **kwargs) as actor:
        assert actor.is_registrar
        yield actor


@pytest.fixture(params=["tcp", "uds"])
def any_reg_addr(
    request: pytest.FixtureRequest, reg_addr: tractor_reg.TCPAddress, uds_dir: str
) -> tractor_reg.Address:
    if request.param == "tcp":
        return reg_addr
    return tractor_reg.UDSAddress(uds_dir, "registry.sock")


async def snapshot() -> list[tuple[Any, ...]]:
    """The registrar's live table, read in its own process through a LocalPortal."""
    async with tractor_reg.get_registry() as portal:
        assert isinstance(portal, tractor_reg.LocalPortal)
        entries = await portal.run_from_ns("self", "list_entries")
        registry = await portal.run_from_ns("self", "get_registry")
    assert registry == {f"{e['name']}.{e['uuid']}": e["addrs"] for e in entries}
    # The per-entry revision changes on every write that touches the entry.
    return sorted((e["name"], e["uuid"], e["revision"], e["addrs"]) for e in entries)


async def assert_still_serves(addr: tractor_reg.Address, before: list[tuple[Any, ...]]) -> None:
    """The registrar's table is ``before`` and a fresh, well-behaved client gets served."""
    assert await snapshot() == before
    me = str(uuidlib.uuid4())
    async with client(addr, "well-behaved", me) as peer:
        assert peer.aid.is_registrar
        assert await peer.reg("find_actor", name="root") is not None
        assert await peer.reg("find_actor", name="well-behaved") is None
        where = ["/nonexistent-tr-dir", f"{me}.sock"]
        await peer.reg("register_actor", uid=["well-behaved", me], addr=[where])
        assert await peer.reg("find_actor", name="well-behaved") == [where]
        assert await peer.reg("unregister_actor", uid=["well-behaved", me]) is True
    assert await snapshot() == before


async def expect_channel_error(peer: RawPeer, type_name: str, *fragments: str) -> Error:
    """The actor answered a protocol violation with ``Error(cid=0)`` and hung up."""
    msg = await peer.recv()
    assert isinstance(msg, Error), msg
    assert msg.cid == 0
    assert msg.type_name == type_name, msg
    for fragment in fragments:
        assert fragment in msg.message, msg
    actor = tractor_reg.current_actor()
    assert msg.src_uid == list(actor.uid)
    await expect_eof(peer)
    return msg


async def expect_eof(peer: RawPeer) -> None:
    with pytest.raises(tractor_reg.TransportClosed):
        msg = await peer.recv()
        pytest.fail(f"expected the connection to close, got {msg!r}")


async def expect_silence(peer: RawPeer) -> None:
    """Nothing arrives: once every task is blocked, any answer would already be here."""
    await trio.testing.wait_all_tasks_blocked()
    with trio.move_on_after(0.05):
        msg = await peer.recv()
        pytest.fail(f"unexpected frame: {msg!r}")


async def wait_peer_gone(actor: tractor_reg.Actor, name: str) -> None:
    """Wait (bounded, no sleeping) until the actor dropped its channel to ``name``."""
    with trio.fail_after(5):
        while actor.get_peer_by_name(name) is not None:
            await trio.testing.wait_all_tasks_blocked()


# -- garbage, undecodable, unknown and truncated frames -------------------------------------


async def test_garbage_after_handshake(any_reg_addr: tractor_reg.Address) -> None:
    with trio.fail_after(10):
        async with registrar(any_reg_addr) as actor:
            before = await snapshot()
            async with client(any_reg_addr, "garbler") as peer:
                assert actor.get_peer_by_name("garbler") is not None
                await peer.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                # b"GET " read as a length is ~1.2 GB: refused before any payload is read.
                await expect_channel_error(peer, "FrameTooLarge", "exceeds the maximum frame size")
            await wait_peer_gone(actor, "garbler")
            await assert_still_serves(any_reg_addr, before)


async def test_garbage_before_handshake(any_reg_addr: tractor_reg.Address) -> None:
    with trio.fail_after(10):
        async with registrar(any_reg_addr):
            before = await snapshot()
            async with raw_peer(any_reg_addr) as peer:
                await peer.recv_handshake()
                await peer.send_raw(frame(b"\xc1\xc1\xc1 not msgpack"))
                await expect_channel_error(peer, "ProtocolError", "undecodable frame")
            await assert_still_serves(any_reg_addr, before)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xc1", id="invalid-opcode"),
        pytest.param(b"", id="empty-payload"),
        pytest.param(b"\x92\x01", id="truncated-array"),
        pytest.param(b"\x81\xa1t\xa4call\xff", id="trailing-bytes"),
        pytest.param(msgspec.msgpack.encode(42), id="an-int"),
        pytest.param(msgspec.msgpack.encode([1, 2, 3]), id="an-array"),
        pytest.param(msgspec.msgpack.encode({"cid": 1}), id="no-tag"),
        pytest.param(
            msgspec.msgpack.encode({"t": "call", "cid": "one", "ns": "self", "func": "ping"}),
            id="cid-not-int",
        ),
        pytest.param(
            msgspec.msgpack.encode(
                {"t": "call", "cid": 1, "ns": "self", "func": "find_actor", "kwargs": [1, 2]}
            ),
            id="kwargs-not-a-map",
        ),
        pytest.param(msgspec.msgpack.encode({"t": "call", "cid": 1}), id="missing-fields"),
    ],
)
async def test_undecodable_frame(reg_addr: tractor_reg.TCPAddress, payload: bytes) -> None:
    """A frame with a valid length prefix whose payload is not one valid message."""
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            async with client(reg_addr, "undecodable") as peer:
                await peer.send_raw(frame(payload))
                await expect_channel_error(peer, "ProtocolError", "undecodable frame")
            await wait_peer_gone(actor, "undecodable")
            await assert_still_serves(reg_addr, before)


@pytest.mark.parametrize("tag", ["launch_missiles", "", "CALL", "hello!"])
async def test_unknown_message_tag(reg_addr: tractor_reg.TCPAddress, tag: str) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with client(reg_addr, "tagger") as peer:
                await peer.send_raw(frame(msgspec.msgpack.encode({"t": tag, "cid": 1})))
                msg = await expect_channel_error(peer, "ProtocolError", "undecodable frame")
                assert repr(tag) in msg.message or tag in msg.message
            await assert_still_serves(reg_addr, before)


async def test_truncated_frame_then_disconnect(reg_addr: tractor_reg.TCPAddress) -> None:
    """Half a frame and a hang-up: the channel goes away quietly, nothing else does."""
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            me = str(uuidlib.uuid4())
            whole = frame(
                encode(
                    Call(
                        cid=1,
                        ns="self",
                        func="register_actor",
                        kwargs={"uid": ["truncated", me], "addr": [["127.0.0.1", 9]]},
                    )
                )
            )
            async with client(reg_addr, "truncated", me) as peer:
                await peer.send_raw(whole[: len(whole) // 2])
            await wait_peer_gone(actor, "truncated")
            # The half-sent registration was never applied.
            await assert_still_serves(reg_addr, before)


async def test_truncated_header_then_disconnect(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            async with client(reg_addr, "half-header") as peer:
                await peer.send_raw(b"\x00\x00")
            await wait_peer_gone(actor, "half-header")
            await assert_still_serves(reg_addr, before)


def _nested(depth: int) -> bytes:
    """msgpack for ``[[[...[None]...]]]``, ``depth`` arrays deep (1 byte per level)."""
    return b"\x91" * depth + b"\xc0"


def _deep_call(depth: int) -> bytes:
    head = msgspec.msgpack.encode({"t": "call", "cid": 1, "ns": "self", "func": "find_actor"})
    return b"\x85" + head[1:] + b"\xa6kwargs\x81\xa4name" + _nested(depth)


def _deep_hello(depth: int) -> bytes:
    head = msgspec.msgpack.encode(
        {"t": "hello", "name": "deep", "uuid": "deep-uuid", "pid": 1, "is_registrar": False}
    )
    return b"\x86" + head[1:] + b"\xa4junk" + _nested(depth)


async def test_moderately_nested_kwargs_are_fine(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr), client(reg_addr, "nested") as peer:
            await peer.send_raw(frame(_deep_call(100)))
            reply = await peer.recv()
            assert isinstance(reply, Error) and reply.type_name == "InvalidRequest", reply


@pytest.mark.parametrize("phase", ["handshake", "after-handshake"])
async def test_deeply_nested_frame_kills_only_its_channel(
    reg_addr: tractor_reg.TCPAddress, phase: str
) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with raw_peer(reg_addr) as peer:
                if phase == "handshake":
                    await peer.recv_handshake()
                    await peer.send_raw(frame(_deep_hello(2000)))
                else:
                    await peer.handshake("deep", "deep-uuid")
                    await peer.send_raw(frame(_deep_call(2000)))
                await expect_channel_error(peer, "ProtocolError")
            await assert_still_serves(reg_addr, before)


async def test_unsolicited_answers_are_ignored(reg_addr: tractor_reg.TCPAddress) -> None:
    """Return/Error frames for calls nobody made do not disturb the actor."""
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with client(reg_addr, "chatty") as peer:
                await peer.send(Return(cid=424242, value={"x": 1}))
                await peer.send(Error(cid=424243, type_name="Boom", message="unasked"))
                await peer.send(Error(cid=0, type_name="Complaint", message="about you"))
                assert await peer.reg("find_actor", name="root") == [list(reg_addr)]
            await assert_still_serves(reg_addr, before)


# -- oversized frames ------------------------------------------------------------------------


async def test_oversized_frame_default_limit(reg_addr: tractor_reg.TCPAddress) -> None:
    """Declared length > 4 MiB: refused from the header alone, nothing is buffered."""
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            assert actor.max_frame_size == 4 * 1024 * 1024
            before = await snapshot()
            async with client(reg_addr, "oversized") as peer:
                await peer.send_raw((4 * 1024 * 1024 + 1).to_bytes(4, "big") + b"\x81")
                await expect_channel_error(
                    peer, "FrameTooLarge", str(4 * 1024 * 1024 + 1), str(4 * 1024 * 1024)
                )
            await wait_peer_gone(actor, "oversized")
            await assert_still_serves(reg_addr, before)


async def test_frame_at_default_limit_is_not_refused_early(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """Exactly max_frame_size is allowed: the header alone does not get it refused."""
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            async with client(reg_addr, "at-limit") as peer:
                # Declare a frame of exactly the limit, send a bit of it and hang up.
                await peer.send_raw((4 * 1024 * 1024).to_bytes(4, "big") + b"\x81")
                # The actor read the header and now waits for the rest of the frame.
                await trio.testing.wait_all_tasks_blocked()
                assert actor.get_peer_by_name("at-limit") is not None
                await expect_silence(peer)
            await wait_peer_gone(actor, "at-limit")
            await assert_still_serves(reg_addr, before)


def _call_of_size(size: int) -> bytes:
    """An encoded ``find_actor`` Call whose payload is exactly ``size`` bytes."""

    def build(n: int) -> bytes:
        return encode(Call(cid=1, ns="self", func="find_actor", kwargs={"name": "x" * n}))

    overhead = len(build(size)) - size
    payload = build(size - overhead)
    assert len(payload) == size
    return payload


async def test_custom_small_max_frame_size(reg_addr: tractor_reg.TCPAddress) -> None:
    limit = 1024
    with trio.fail_after(10):
        async with registrar(reg_addr, max_frame_size=limit) as actor:
            assert actor.max_frame_size == limit
            before = await snapshot()
            async with client(reg_addr, "small-ok") as peer:
                # A frame of exactly the limit is served...
                await peer.send_raw(frame(_call_of_size(limit)))
                reply = await peer.recv()
                assert isinstance(reply, Return) and reply.cid == 1 and reply.value is None
                # ...one byte more is not.
                await peer.send_raw(frame(_call_of_size(limit + 1)))
                await expect_channel_error(peer, "FrameTooLarge", str(limit + 1), str(limit))
            await assert_still_serves(reg_addr, before)


async def test_oversized_frame_while_still_sending(reg_addr: tractor_reg.TCPAddress) -> None:
    """A peer that streams a whole oversized frame gets the error and loses the connection."""
    limit = 1024
    with trio.fail_after(10):
        async with registrar(reg_addr, max_frame_size=limit):
            before = await snapshot()
            async with client(reg_addr, "streamer") as peer:
                big = frame(_call_of_size(2 * 1024 * 1024))

                async def push() -> None:
                    try:
                        await peer.send_raw(big)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # the actor hung up on us mid-frame: expected

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(push)
                    msg = await peer.recv()
                    assert isinstance(msg, Error) and msg.cid == 0, msg
                    assert msg.type_name == "FrameTooLarge"
            await assert_still_serves(reg_addr, before)


async def test_oversized_frame_during_handshake(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr, max_frame_size=512):
            before = await snapshot()
            async with raw_peer(reg_addr) as peer:
                await peer.recv_handshake()
                await peer.send(hello("h" * 1000, "u"))
                await expect_channel_error(peer, "FrameTooLarge", "1")
            await assert_still_serves(reg_addr, before)


# -- handshakes -----------------------------------------------------------------------------


async def test_slow_loris_silent(any_reg_addr: tractor_reg.Address) -> None:
    """Connect and never say anything: dropped after handshake_timeout, others unaffected."""
    with trio.fail_after(10):
        async with registrar(any_reg_addr) as actor:
            before = await snapshot()
            async with raw_peer(any_reg_addr) as loris:
                started = trio.current_time()
                await loris.recv_handshake()
                # Others are served while the loris holds its connection open.
                await assert_still_serves(any_reg_addr, before)
                await expect_channel_error(loris, "HandshakeError", "not completed within 0.5")
                elapsed = trio.current_time() - started
                assert elapsed >= actor.handshake_timeout * 0.9
                assert elapsed < actor.handshake_timeout + 2.0
            await assert_still_serves(any_reg_addr, before)


async def test_slow_loris_half_frame(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with raw_peer(reg_addr) as loris:
                await loris.recv_handshake()
                data = frame(encode(hello("loris", "u")))
                await loris.send_raw(data[: len(data) - 3])
                await expect_channel_error(loris, "HandshakeError", "not completed")
            await assert_still_serves(reg_addr, before)


async def test_slow_loris_trickle(reg_addr: tractor_reg.TCPAddress) -> None:
    """Bytes keep coming, but the handshake never completes: the deadline is for the whole
    handshake, not per read."""
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with raw_peer(reg_addr) as loris:
                await loris.recv_handshake()
                data = frame(encode(hello("loris" * 20, "u")))
                started = trio.current_time()

                async def trickle() -> None:
                    try:
                        for i in range(len(data) - 1):
                            await loris.send_raw(data[i : i + 1])
                            await trio.sleep(0.02)  # pacing a slow sender, not awaiting state
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trickle)
                    await expect_channel_error(loris, "HandshakeError", "not completed")
                    nursery.cancel_scope.cancel()
                assert trio.current_time() - started < HANDSHAKE_TIMEOUT + 2.0
            await assert_still_serves(reg_addr, before)


async def test_second_handshake(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            async with client(reg_addr, "twice") as peer:
                await peer.send(hello("someone-else", "other-uuid"))
                await expect_channel_error(peer, "ProtocolError", "Handshake")
            await wait_peer_gone(actor, "twice")
            assert actor.get_peer_by_name("someone-else") is None
            await assert_still_serves(reg_addr, before)


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(Call(cid=1, ns="self", func="get_registry"), id="call-first"),
        pytest.param(Return(cid=1, value=None), id="return-first"),
        pytest.param(CancelCall(cid=1), id="cancel-first"),
        pytest.param(Handshake(name="x", uuid="u", pid=1, is_registrar=False, version=2), id="v2"),
        pytest.param(Handshake(name="", uuid="u", pid=1, is_registrar=False), id="empty-name"),
        pytest.param(Handshake(name="x", uuid="", pid=1, is_registrar=False), id="empty-uuid"),
        pytest.param(
            Handshake(name="x", uuid="u", pid=1, is_registrar=False, accept_addrs=[("h", 70000)]),
            id="bad-accept-addr",
        ),
    ],
)
async def test_bad_handshake(reg_addr: tractor_reg.TCPAddress, first: Any) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with raw_peer(reg_addr) as peer:
                await peer.recv_handshake()
                await peer.send(first)
                await expect_channel_error(peer, "HandshakeError")
            await assert_still_serves(reg_addr, before)


async def test_handshake_identity_is_reported(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor, raw_peer(reg_addr) as peer:
            theirs = await peer.recv_handshake()
            assert theirs.name == actor.name and theirs.uuid == actor.uuid
            assert theirs.is_registrar is True
            assert [tuple(a) for a in theirs.accept_addrs] == [tuple(reg_addr)]
            await peer.send(hello("ident", "ident-uuid", [("127.0.0.1", 4242)]))
            assert await peer.reg("ping") == ["root", actor.uuid]
            chan = actor.get_peer_by_name("ident")
            assert chan is not None
            assert chan.aid.uid == ("ident", "ident-uuid")
            assert chan.aid.accept_addrs == (tractor_reg.TCPAddress("127.0.0.1", 4242),)


# -- calls to things a peer may not call -----------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "func", "refusal"),
    [
        pytest.param("no.such.module", "f", "ModuleNotExposed", id="unknown-namespace"),
        pytest.param("", "f", "ModuleNotExposed", id="empty-namespace"),
        pytest.param("self", "no_such_endpoint", "RPCNotAllowed", id="unknown-self-endpoint"),
        pytest.param("self", "_register", "RPCNotAllowed", id="private-method"),
        pytest.param("self", "cancel_soon", "RPCNotAllowed", id="public-method-not-exposed"),
        pytest.param("self", "__init__", "RPCNotAllowed", id="dunder"),
        pytest.param("self", "backend", "RPCNotAllowed", id="self-attribute"),
        pytest.param(FUNCS, "no_such_function", "RPCNotAllowed", id="unknown-function"),
        pytest.param(FUNCS, "trio", "RPCNotAllowed", id="module-attribute"),
        pytest.param(FUNCS, "annotations", "RPCNotAllowed", id="non-function-attribute"),
        pytest.param(FUNCS, "__name__", "RPCNotAllowed", id="dunder-attribute"),
        pytest.param("os", "getpid", "ModuleNotExposed", id="module-not-enabled"),
        pytest.param(
            "tractor_reg._registrar",
            "Registrar",
            "ModuleNotExposed",
            id="runtime-module-not-enabled",
        ),
        pytest.param("builtins", "eval", "ModuleNotExposed", id="builtins"),
    ],
)
async def test_call_not_allowed(
    reg_addr: tractor_reg.TCPAddress, ns: str, func: str, refusal: str
) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            async with client(reg_addr, "nosy") as peer:
                reply = await peer.call(ns, func, name="x")
                assert isinstance(reply, Error), reply
                assert reply.cid != 0
                # a module that is not enabled: ModuleNotExposed (an RPCNotAllowed)
                assert reply.type_name == refusal
                assert func in reply.message or repr(ns) in reply.message
                assert reply.src_uid == list(actor.uid)
                # The channel still works: the next call succeeds.
                assert await peer.reg("find_actor", name="root") == [list(reg_addr)]
                assert await peer.reg("ping") == list(actor.uid)
                echo = await peer.call(FUNCS, "echo", value=[1, "two"])
                assert isinstance(echo, Return) and echo.value == [1, "two"]
            await assert_still_serves(reg_addr, before)


async def test_many_bad_calls_then_good_ones_on_one_channel(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with client(reg_addr, "persistent") as peer:
                cids = [await peer.send_call("nope", "f", i=i) for i in range(20)]
                replies = {}
                for _ in cids:
                    msg = await peer.recv()
                    assert isinstance(msg, Error) and msg.type_name == "ModuleNotExposed", msg
                    replies[msg.cid] = msg
                assert sorted(replies) == sorted(cids)
                assert await peer.reg("find_actor", name="nobody") is None
            await assert_still_serves(reg_addr, before)


async def test_remote_exception_keeps_channel(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr), client(reg_addr, "booming") as peer:
            reply = await peer.call(FUNCS, "boom", message="kaput")
            assert isinstance(reply, Error)
            assert reply.type_name == "ValueError" and reply.message == "kaput"
            assert "Traceback" in reply.traceback
            assert await peer.reg("find_actor", name="nobody") is None


# -- registry calls with wrong argument types ------------------------------------------------

ME = ["wrong-args", "wrong-args-uuid"]
GOOD_ADDR = [["127.0.0.1", 9]]
#: Well-formed (32 bytes) but owning nothing.
TOKEN = bytes(range(32))


@pytest.mark.parametrize(
    ("func", "kwargs"),
    [
        # uid is not a pair of (non-empty) strings
        ("register_actor", {"uid": "wrong-args", "addr": GOOD_ADDR}),
        ("register_actor", {"uid": ["wrong-args"], "addr": GOOD_ADDR}),
        ("register_actor", {"uid": [*ME, "extra"], "addr": GOOD_ADDR}),
        ("register_actor", {"uid": ["wrong-args", 1], "addr": GOOD_ADDR}),
        ("register_actor", {"uid": ["", "x"], "addr": GOOD_ADDR}),
        ("register_actor", {"uid": None, "addr": GOOD_ADDR}),
        ("register_actor", {"uid": {"name": "a", "uuid": "b"}, "addr": GOOD_ADDR}),
        ("register_actor", {"uid": [b"wrong-args", b"wrong-args-uuid"], "addr": GOOD_ADDR}),
        # addr is not a TCP or UDS address (or a list of them)
        ("register_actor", {"uid": ME, "addr": "tcp://127.0.0.1:9"}),
        ("register_actor", {"uid": ME, "addr": ["tcp://127.0.0.1:9"]}),
        ("register_actor", {"uid": ME, "addr": []}),
        ("register_actor", {"uid": ME, "addr": 9}),
        ("register_actor", {"uid": ME, "addr": None}),
        ("register_actor", {"uid": ME, "addr": {"host": "127.0.0.1", "port": 9}}),
        ("register_actor", {"uid": ME, "addr": ["127.0.0.1", 70000]}),
        ("register_actor", {"uid": ME, "addr": ["127.0.0.1", -1]}),
        ("register_actor", {"uid": ME, "addr": ["127.0.0.1", True]}),
        ("register_actor", {"uid": ME, "addr": ["127.0.0.1", 9.5]}),
        ("register_actor", {"uid": ME, "addr": ["", 9]}),
        ("register_actor", {"uid": ME, "addr": [1, 2]}),
        ("register_actor", {"uid": ME, "addr": ["127.0.0.1", 9, 10]}),
        ("register_actor", {"uid": ME, "addr": [["127.0.0.1", 9], ["127.0.0.1"]]}),
        ("register_actor", {"uid": ME, "addr": [["127.0.0.1", 9], "junk"]}),
        ("register_actor", {"uid": ME, "addr": [[["127.0.0.1", 9]]]}),
        ("register_actor", {"uid": ME, "addr": ["/tmp", ""]}),
        ("register_actor", {"uid": ME, "addr": ["/tmp", "a/b.sock"]}),
        # ttl negative / zero / not a number
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "ttl": -1}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "ttl": 0}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "ttl": "10"}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "ttl": True}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "ttl": math.inf}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "ttl": math.nan}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "ttl": [1]}),
        ("renew_lease", {"uid": ME, "token": TOKEN, "ttl": -5}),
        ("renew_lease", {"uid": ME, "token": TOKEN, "ttl": "soon"}),
        ("renew_lease", {"uid": ME, "token": TOKEN, "ttl": 0}),
        ("renew_lease", {"uid": ME, "token": TOKEN, "ttl": math.nan}),
        ("renew_lease", {"uid": ME, "token": TOKEN, "ttl": math.inf}),
        ("renew_lease", {"uid": ME, "token": TOKEN, "ttl": True}),
        ("renew_lease", {"uid": "wrong-args", "token": TOKEN}),
        ("unregister_actor", {"uid": 42, "token": TOKEN}),
        ("unregister_actor", {"uid": [ME[0]], "token": TOKEN}),
        # a lease token is exactly 32 bytes (register_actor: or None)
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "token": TOKEN[:31]}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "token": TOKEN + b"x"}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "token": TOKEN.hex()}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "token": b""}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "token": list(TOKEN)}),
        ("renew_lease", {"uid": ME, "token": None}),
        ("renew_lease", {"uid": ME, "token": TOKEN[:16]}),
        ("renew_lease", {"uid": ME, "token": 7}),
        ("unregister_actor", {"uid": ME, "token": None}),
        ("unregister_actor", {"uid": ME, "token": "x" * 32}),
        # name is not a (non-empty) str
        ("find_actor", {"name": 5}),
        ("find_actor", {"name": ""}),
        ("find_actor", {"name": None}),
        ("find_actor", {"name": ["root"]}),
        ("find_actors", {"name": 1.5}),
        ("wait_for_actor", {"name": 5}),
        ("wait_for_actor", {"name": ""}),
        # delete_addr takes exactly one TCP or UDS address
        ("delete_addr", {"addr": "tcp://127.0.0.1:9"}),
        ("delete_addr", {"addr": [["127.0.0.1", 9], ["127.0.0.1", 10]]}),
        ("delete_addr", {"addr": ["127.0.0.1", "x", "y"]}),
        ("delete_addr", {"addr": 7}),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v)[:60],
)
async def test_registry_call_invalid_arguments(
    reg_addr: tractor_reg.TCPAddress, func: str, kwargs: dict[str, Any]
) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with client(reg_addr, ME[0], ME[1]) as peer:
                reply = await peer.call("self", func, **kwargs)
                assert isinstance(reply, Error), reply
                assert reply.type_name == "InvalidRequest", reply
                assert reply.message
                # The channel keeps working.
                assert await peer.reg("find_actor", name="root") == [list(reg_addr)]
            await assert_still_serves(reg_addr, before)


@pytest.mark.parametrize(
    ("func", "kwargs"),
    [
        ("register_actor", {}),
        ("register_actor", {"uid": ME}),
        ("unregister_actor", {}),
        ("unregister_actor", {"uid": ME}),
        ("renew_lease", {}),
        ("renew_lease", {"uid": ME, "ttl": 1.0}),
        ("find_actor", {}),
        ("find_actors", {}),
        ("wait_for_actor", {}),
        ("delete_addr", {}),
        ("find_actor", {"name": "x", "bogus": 1}),
        ("get_registry", {"name": "x"}),
        ("register_actor", {"uid": ME, "addr": GOOD_ADDR, "lease": 3}),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v)[:60],
)
async def test_registry_call_missing_or_unknown_kwargs(
    reg_addr: tractor_reg.TCPAddress, func: str, kwargs: dict[str, Any]
) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with client(reg_addr, ME[0], ME[1]) as peer:
                reply = await peer.call("self", func, **kwargs)
                assert isinstance(reply, Error), reply
                assert reply.type_name == "TypeError", reply
                assert await peer.reg("find_actor", name="root") == [list(reg_addr)]
            await assert_still_serves(reg_addr, before)


# -- clients that go away mid-call -----------------------------------------------------------


async def test_disconnect_while_blocked_in_wait_for_actor(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            async with client(reg_addr, "impatient") as peer:
                await peer.send_call("self", "wait_for_actor", name="late-comer")
                # The registrar has started the call and blocks in it.
                await trio.testing.wait_all_tasks_blocked()
            await wait_peer_gone(actor, "impatient")
            await assert_still_serves(reg_addr, before)

            # A well-behaved waiter for the same name is woken by a registration.
            async with (
                client(reg_addr, "waiter") as waiter,
                client(reg_addr, "late-comer", "late-uuid") as late,
            ):
                cid = await waiter.send_call("self", "wait_for_actor", name="late-comer")
                await trio.testing.wait_all_tasks_blocked()
                where = [["127.0.0.1", 9]]
                await late.reg("register_actor", uid=["late-comer", "late-uuid"], addr=where)
                answer = await waiter.recv()
                assert isinstance(answer, Return) and answer.cid == cid
                assert answer.value == where
                assert await late.reg("unregister_actor", uid=["late-comer", "late-uuid"])
            assert await snapshot() == before


async def test_many_disconnecting_waiters(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr) as actor:
            before = await snapshot()
            for i in range(10):
                async with client(reg_addr, f"waiter-{i}") as peer:
                    for _ in range(5):
                        await peer.send_call("self", "wait_for_actor", name="never")
                    await trio.testing.wait_all_tasks_blocked()
            for i in range(10):
                await wait_peer_gone(actor, f"waiter-{i}")
            await assert_still_serves(reg_addr, before)


async def test_cancel_call_keeps_channel(reg_addr: tractor_reg.TCPAddress) -> None:
    """A caller that gives up on a blocked call cancels it; the channel keeps working."""
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with client(reg_addr, "canceller") as peer:
                cid = await peer.send_call("self", "wait_for_actor", name="never")
                await trio.testing.wait_all_tasks_blocked()
                await peer.send(CancelCall(cid=cid))
                await peer.send(CancelCall(cid=987654))  # unknown cid: ignored
                reply = await peer.call("self", "find_actor", name="root")
                assert isinstance(reply, Return) and reply.value == [list(reg_addr)]
                # The cancelled call is never answered.
                await expect_silence(peer)
            await assert_still_serves(reg_addr, before)


async def test_disconnect_during_delete_addr_probe(reg_addr: tractor_reg.TCPAddress) -> None:
    """The registrar is busy probing (a wedged listener) when the reporter hangs up."""
    with trio.fail_after(10):
        async with (
            registrar(reg_addr, probe_timeout=5.0) as actor,
            fake_actor("wedged", "wedged-uuid", answer=False) as addr,
            client(reg_addr, "wedged", "wedged-uuid") as owner,
        ):
            await owner.reg("register_actor", uid=["wedged", "wedged-uuid"], addr=[addr])
            before = await snapshot()
            async with client(reg_addr, "reporter") as reporter:
                await reporter.send_call("self", "delete_addr", addr=list(addr))
                await trio.testing.wait_all_tasks_blocked()
            await wait_peer_gone(actor, "reporter")
            await assert_still_serves(reg_addr, before)
            assert await owner.reg("unregister_actor", uid=["wedged", "wedged-uuid"])


# -- who may write what ----------------------------------------------------------------------


async def test_register_and_unregister_someone_else_is_denied(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(10):
        async with (
            registrar(reg_addr),
            client(reg_addr, "victim", "victim-uuid") as victim,
            client(reg_addr, "mallory", "mallory-uuid") as mallory,
        ):
            v_uid = ["victim", "victim-uuid"]
            await victim.reg("register_actor", uid=v_uid, addr=[["127.0.0.1", 9]])
            before = await snapshot()
            assert next(e for e in before if e[0] == "victim")[3] == [["127.0.0.1", 9]]

            attempts: list[tuple[str, dict[str, Any]]] = [
                ("register_actor", {"uid": v_uid, "addr": [["127.0.0.1", 10]]}),
                ("register_actor", {"uid": v_uid, "addr": [["127.0.0.1", 9]], "ttl": 0.01}),
                ("register_actor", {"uid": v_uid, "addr": [["127.0.0.1", 10]], "token": TOKEN}),
                ("unregister_actor", {"uid": v_uid, "token": TOKEN}),
                ("unregister_actor", {"uid": ("victim", "victim-uuid"), "token": TOKEN}),
                ("renew_lease", {"uid": v_uid, "ttl": 0.01, "token": TOKEN}),
                (
                    "unregister_actor",
                    {"uid": ["root", tractor_reg.current_actor().uuid], "token": TOKEN},
                ),
            ]
            for func, kwargs in attempts:
                reply = await mallory.call("self", func, **kwargs)
                assert isinstance(reply, Error), (func, reply)
                assert reply.type_name == "PermissionDenied", (func, reply)
                assert "lease token presented does not match" in reply.message
            assert await snapshot() == before
            assert await mallory.reg("find_actor", name="victim") == [["127.0.0.1", 9]]
            # The victim itself still may.
            assert await victim.reg("unregister_actor", uid=v_uid) is True
            assert await mallory.reg("find_actor", name="victim") is None


async def test_register_cannot_steal_a_live_actors_address(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """Registering an address that a live actor (answering at it with its own uid) holds
    is refused, and the owner keeps it."""
    with trio.fail_after(10):
        async with (
            registrar(reg_addr) as actor,
            fake_actor("victim", "victim-uuid") as victim_addr,
            client(reg_addr, "victim", "victim-uuid") as victim,
            client(reg_addr, "mallory", "mallory-uuid") as mallory,
        ):
            await victim.reg("register_actor", uid=["victim", "victim-uuid"], addr=[victim_addr])
            before = await snapshot()
            for stolen in ([victim_addr], [reg_addr], [["127.0.0.1", 9], reg_addr]):
                reply = await mallory.call(
                    "self",
                    "register_actor",
                    uid=["mallory", "mallory-uuid"],
                    addr=[list(a) for a in stolen],
                )
                assert isinstance(reply, Error), reply
                assert reply.type_name == "PermissionDenied", reply
            assert await snapshot() == before
            assert await mallory.reg("find_actor", name="victim") == [list(victim_addr)]
            assert await mallory.reg("find_actor", name="root") == [list(reg_addr)]
            assert f"root.{actor.uuid}" in await mallory.reg("get_registry")


async def test_register_takes_over_an_address_whose_owner_is_gone(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """The legitimate eviction: a new actor reclaims an address its old owner left."""
    with trio.fail_after(10):
        async with (
            registrar(reg_addr),
            client(reg_addr, "old", "old-uuid") as old,
            client(reg_addr, "new", "new-uuid") as new,
        ):
            async with fake_actor("old", "old-uuid") as addr:
                await old.reg("register_actor", uid=["old", "old-uuid"], addr=[addr])
            # The old owner's listener is closed; the port is free for whoever binds it.
            await new.reg("register_actor", uid=["new", "new-uuid"], addr=[addr])
            assert await new.reg("find_actor", name="new") == [list(addr)]
            assert await new.reg("find_actor", name="old") is None


async def test_delete_addr_of_live_fake_actor_is_refused(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """A third party reports a live address: the registrar probes it and keeps it; once the
    listener is gone, the same report deletes it."""
    with trio.fail_after(10):
        async with registrar(reg_addr), client(reg_addr, "reporter") as reporter:
            async with (
                fake_actor("alive", "alive-uuid") as addr,
                client(reg_addr, "alive", "alive-uuid") as alive,
            ):
                await alive.reg("register_actor", uid=["alive", "alive-uuid"], addr=[addr])
                with_alive = await snapshot()
                assert await reporter.reg("delete_addr", addr=list(addr)) is False
                assert await snapshot() == with_alive
                assert await reporter.reg("find_actor", name="alive") == [list(addr)]
            # Listener closed: the address refuses connections and is stale now.
            assert await reporter.reg("delete_addr", addr=list(addr)) is True
            assert await reporter.reg("find_actor", name="alive") is None
            assert all(e[0] != "alive" for e in await snapshot())
            # Reporting it again changes nothing.
            assert await reporter.reg("delete_addr", addr=list(addr)) is False


async def test_delete_addr_keeps_other_addresses_of_the_owner(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(10):
        async with (
            registrar(reg_addr),
            client(reg_addr, "reporter") as reporter,
            client(reg_addr, "multi", "multi-uuid") as multi,
        ):
            async with (
                fake_actor("multi", "multi-uuid") as live,
                fake_actor("multi", "multi-uuid") as doomed,
            ):
                await multi.reg("register_actor", uid=["multi", "multi-uuid"], addr=[live, doomed])
                assert await reporter.reg("delete_addr", addr=list(live)) is False
            assert await reporter.reg("delete_addr", addr=list(doomed)) is True
            assert await reporter.reg("delete_addr", addr=list(live)) is True
            assert await reporter.reg("find_actor", name="multi") is None


async def test_delete_addr_wrong_identity_or_wedged(reg_addr: tractor_reg.TCPAddress) -> None:
    """Something else now answers at the address, or nothing answers the handshake: stale."""
    with trio.fail_after(10):
        async with (
            registrar(reg_addr, probe_timeout=0.3),
            client(reg_addr, "reporter") as reporter,
            client(reg_addr, "gone", "gone-uuid") as gone,
        ):
            async with (
                fake_actor("impostor", "impostor-uuid") as reused,
                fake_actor("gone", "gone-uuid", answer=False) as wedged,
            ):
                await gone.reg("register_actor", uid=["gone", "gone-uuid"], addr=[reused])
                assert await reporter.reg("delete_addr", addr=list(reused)) is True
                await gone.reg("register_actor", uid=["gone", "gone-uuid"], addr=[wedged])
                started = trio.current_time()
                assert await reporter.reg("delete_addr", addr=list(wedged)) is True
                assert trio.current_time() - started < 2.0
            assert await reporter.reg("find_actor", name="gone") is None


async def test_delete_addr_of_unknown_or_registrar_address(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(10):
        async with registrar(reg_addr):
            before = await snapshot()
            async with client(reg_addr, "reporter") as reporter:
                assert await reporter.reg("delete_addr", addr=["127.0.0.1", 9]) is False
                assert (
                    await reporter.reg("delete_addr", addr=["/nonexistent-tr", "x.sock"]) is False
                )
                assert await reporter.reg("delete_addr", addr=list(reg_addr)) is False
            await assert_still_serves(reg_addr, before)


async def test_delete_addr_of_live_child_actor_is_refused(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """A real child process registered itself; a third party cannot evict it."""
    with trio.fail_after(30):
        async with registrar(reg_addr), tractor_reg.open_nursery() as an:
            portal = await an.start_actor("live-child", enable_modules=[FUNCS])
            child_addrs = [list(a) for a in portal.channel.aid.accept_addrs]
            assert child_addrs
            with_child = await snapshot()
            async with client(reg_addr, "reporter") as reporter:
                assert await reporter.reg("find_actor", name="live-child") == child_addrs
                for addr in child_addrs:
                    assert await reporter.reg("delete_addr", addr=addr) is False
                assert await reporter.reg("find_actor", name="live-child") == child_addrs
            assert await snapshot() == with_child
            assert await portal.run(funcs.echo, value="still here") == "still here"
            assert await portal.cancel_actor()
