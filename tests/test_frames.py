"""Unit tests of :class:`~tractor_reg._ipc.Channel` framing over in-memory streams."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

import tractor_reg
from tractor_reg._ipc import DEFAULT_MAX_FRAME_SIZE, Channel
from tractor_reg._msg import (
    PROTOCOL_VERSION,
    Call,
    CancelCall,
    Error,
    Handshake,
    Msg,
    Return,
    decode,
    encode,
)

HEADER = struct.Struct(">I")


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def wire(*msgs: Msg) -> bytes:
    return b"".join(frame(encode(m)) for m in msgs)


def pair(**kwargs: Any) -> tuple[Channel, Channel]:
    left, right = trio.testing.memory_stream_pair()
    return Channel(left, **kwargs), Channel(right, **kwargs)


class ScriptedStream(trio.abc.Stream):
    """A receive side that hands out exactly the given chunks, then EOF."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = [c for c in chunks if c]
        self.reads = 0
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.reads += 1
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        assert max_bytes is None or len(chunk) <= max_bytes
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


def hello(name: str = "peer", uuid: str = "peer-uuid", **kw: Any) -> Handshake:
    return Handshake(name=name, uuid=uuid, pid=os.getpid(), is_registrar=False, **kw)


SAMPLES: list[Msg] = [
    hello(accept_addrs=[("127.0.0.1", 1616), ("/tmp/x", "a.sock")]),
    Call(cid=1, ns="self", func="find_actor", kwargs={"name": "svc"}),
    Call(cid=2**40, ns="mod", func="f"),
    Return(cid=1, value=[["127.0.0.1", 1616]]),
    Return(cid=3, value={"nested": {"list": [1, 2.5, None, True, "s", b"bytes"]}}),
    Return(cid=4),
    Error(cid=5, type_name="ValueError", message="bad", traceback="tb", src_uid=["a", "b"]),
    Error(cid=0, type_name="ProtocolError", message="x"),
    CancelCall(cid=6),
]


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
async def test_round_trip_each_message_type(msg: Msg) -> None:
    a, b = pair()
    with trio.fail_after(5):
        await a.send(msg)
        assert await b.recv() == msg
        await b.send(msg)
        assert await a.recv() == msg


async def test_round_trip_many_in_order_both_ways() -> None:
    a, b = pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def pump(src: Channel) -> None:
                for m in SAMPLES:
                    await src.send(m)

            nursery.start_soon(pump, a)
            nursery.start_soon(pump, b)
            assert [await b.recv() for _ in SAMPLES] == SAMPLES
            assert [await a.recv() for _ in SAMPLES] == SAMPLES


async def test_wire_format_is_length_prefixed_msgpack() -> None:
    left, right = trio.testing.memory_stream_pair()
    chan = Channel(left)
    msg = Call(cid=9, ns="self", func="ping")
    with trio.fail_after(5):
        await chan.send(msg)
        data = await right.receive_some()
    (length,) = HEADER.unpack_from(data)
    assert length == len(data) - 4
    # receive_some may hand back a bytearray, which decode() is not declared to take.
    assert decode(data[4:]) == msg
    assert msgspec.msgpack.decode(data[4:])["t"] == "call"


async def test_large_frame_round_trip() -> None:
    a, b = pair()
    big = Return(cid=1, value="x" * (DEFAULT_MAX_FRAME_SIZE - 64))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.send, big)
            assert await b.recv() == big


# -- chunking ------------------------------------------------------------------------------


async def test_frame_split_into_single_bytes() -> None:
    data = wire(*SAMPLES)
    stream = ScriptedStream(data[i : i + 1] for i in range(len(data)))
    chan = Channel(stream)
    with trio.fail_after(5):
        assert [await chan.recv() for _ in SAMPLES] == SAMPLES
        with pytest.raises(tractor_reg.TransportClosed):
            await chan.recv()
    assert stream.reads == len(data) + 1


@pytest.mark.parametrize("size", [2, 3, 5, 7, 13])
async def test_frames_split_across_odd_chunks(size: int) -> None:
    """Chunk boundaries land inside headers, inside payloads and between frames."""
    data = wire(*SAMPLES)
    chan = Channel(ScriptedStream(data[i : i + size] for i in range(0, len(data), size)))
    with trio.fail_after(5):
        assert [await chan.recv() for _ in SAMPLES] == SAMPLES


async def test_several_frames_in_one_chunk() -> None:
    chan = Channel(ScriptedStream([wire(*SAMPLES)]))
    with trio.fail_after(5):
        assert [await chan.recv() for _ in SAMPLES] == SAMPLES
        with pytest.raises(tractor_reg.TransportClosed):
            await chan.recv()


async def test_chunk_with_frame_and_a_half() -> None:
    one, two, three = (frame(encode(m)) for m in SAMPLES[:3])
    cut = len(two) // 2
    chan = Channel(ScriptedStream([one + two[:cut], two[cut:] + three]))
    with trio.fail_after(5):
        assert [await chan.recv() for _ in range(3)] == SAMPLES[:3]


async def test_tiny_chunks_over_memory_stream() -> None:
    """A sender writing one byte at a time over a real (in-memory) stream."""
    left, right = trio.testing.memory_stream_pair()
    chan = Channel(right)
    data = wire(*SAMPLES)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def dribble() -> None:
                for i in range(len(data)):
                    await left.send_all(data[i : i + 1])

            nursery.start_soon(dribble)
            assert [await chan.recv() for _ in SAMPLES] == SAMPLES


# -- size limits ---------------------------------------------------------------------------


async def test_frame_too_large_is_refused_from_the_header() -> None:
    stream = ScriptedStream([HEADER.pack(17)])  # no payload at all: never needed
    chan = Channel(stream, max_frame_size=16)
    with trio.fail_after(5), pytest.raises(tractor_reg.FrameTooLarge) as info:
        await chan.recv()
    assert isinstance(info.value, tractor_reg.ProtocolError)
    assert "17" in str(info.value) and "16" in str(info.value)


async def test_frame_at_the_limit_is_accepted() -> None:
    payload = encode(Return(cid=1, value="x" * 20))
    chan = Channel(ScriptedStream([frame(payload)]), max_frame_size=len(payload))
    with trio.fail_after(5):
        assert await chan.recv() == Return(cid=1, value="x" * 20)
    too_small = Channel(ScriptedStream([frame(payload)]), max_frame_size=len(payload) - 1)
    with trio.fail_after(5), pytest.raises(tractor_reg.FrameTooLarge):
        await too_small.recv()


async def test_default_max_frame_size() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == 4 * 1024 * 1024
    chan = Channel(ScriptedStream([HEADER.pack(DEFAULT_MAX_FRAME_SIZE + 1)]))
    assert chan.max_frame_size == DEFAULT_MAX_FRAME_SIZE
    with trio.fail_after(5), pytest.raises(tractor_reg.FrameTooLarge):
        await chan.recv()


async def test_max_length_header() -> None:
    chan = Channel(ScriptedStream([b"\xff\xff\xff\xff"]))
    with trio.fail_after(5), pytest.raises(tractor_reg.FrameTooLarge):
        await chan.recv()


# -- garbage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xc1", id="invalid-opcode"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x92\x01", id="truncated"),
        pytest.param(encode(CancelCall(cid=1)) + b"\x00", id="trailing-bytes"),
        pytest.param(msgspec.msgpack.encode("hello"), id="a-string"),
        pytest.param(msgspec.msgpack.encode({"t": "nope", "cid": 1}), id="unknown-tag"),
        pytest.param(msgspec.msgpack.encode({"cid": 1}), id="no-tag"),
        pytest.param(msgspec.msgpack.encode({"t": "cancel", "cid": "1"}), id="wrong-field-type"),
        pytest.param(msgspec.msgpack.encode({"t": "call", "cid": 1}), id="missing-fields"),
        pytest.param(
            msgspec.msgpack.encode({"t": "hello", "name": "n", "uuid": "u", "pid": 1}),
            id="hello-missing-is-registrar",
        ),
    ],
)
async def test_garbage_payload_is_a_protocol_error(payload: bytes) -> None:
    chan = Channel(ScriptedStream([frame(payload)]))
    with trio.fail_after(5), pytest.raises(tractor_reg.ProtocolError) as info:
        await chan.recv()
    assert not isinstance(info.value, tractor_reg.FrameTooLarge)
    assert "undecodable frame" in str(info.value)


async def test_good_frame_then_garbage() -> None:
    chan = Channel(ScriptedStream([wire(SAMPLES[1]) + frame(b"\xc1junk")]))
    with trio.fail_after(5):
        assert await chan.recv() == SAMPLES[1]
        with pytest.raises(tractor_reg.ProtocolError):
            await chan.recv()


@pytest.mark.parametrize("kind", ["call-kwargs", "hello-unknown-field"])
async def test_deeply_nested_payload_is_a_protocol_error(kind: str) -> None:
    nested = b"\x91" * 2000 + b"\xc0"
    if kind == "call-kwargs":
        head = msgspec.msgpack.encode({"t": "call", "cid": 1, "ns": "m", "func": "f"})
        payload = b"\x85" + head[1:] + b"\xa6kwargs\x81\xa1x" + nested
    else:
        head = msgspec.msgpack.encode(
            {"t": "hello", "name": "n", "uuid": "u", "pid": 1, "is_registrar": False}
        )
        payload = b"\x86" + head[1:] + b"\xa4junk" + nested
    chan = Channel(ScriptedStream([frame(payload)]))
    with trio.fail_after(5), pytest.raises(tractor_reg.ProtocolError):
        await chan.recv()


def test_exception_hierarchy() -> None:
    assert issubclass(tractor_reg.FrameTooLarge, tractor_reg.ProtocolError)
    assert issubclass(tractor_reg.HandshakeError, tractor_reg.ProtocolError)
    assert issubclass(tractor_reg.ProtocolError, tractor_reg.TractorRegError)
    assert issubclass(tractor_reg.TransportClosed, tractor_reg.TractorRegError)
    assert not issubclass(tractor_reg.TransportClosed, tractor_reg.ProtocolError)


# -- end of stream -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="before-any-frame"),
        pytest.param(b"\x00\x00", id="mid-header"),
        pytest.param(frame(encode(SAMPLES[1]))[:-1], id="mid-payload"),
        pytest.param(HEADER.pack(10), id="after-header"),
    ],
)
async def test_eof_is_transport_closed(data: bytes) -> None:
    chan = Channel(ScriptedStream([data]))
    with trio.fail_after(5), pytest.raises(tractor_reg.TransportClosed):
        await chan.recv()


async def test_eof_over_memory_stream_after_frames() -> None:
    left, right = trio.testing.memory_stream_pair()
    a, b = Channel(left), Channel(right)
    with trio.fail_after(5):
        await a.send(SAMPLES[1])
        await a.aclose()
        assert a.closed and a.closed_event.is_set()
        assert await b.recv() == SAMPLES[1]
        with pytest.raises(tractor_reg.TransportClosed):
            await b.recv()


async def test_send_after_close_and_to_a_closed_peer() -> None:
    a, b = pair()
    with trio.fail_after(5):
        await a.aclose()
        await a.aclose()  # idempotent
        with pytest.raises(tractor_reg.TransportClosed):
            await a.send(SAMPLES[1])
        with pytest.raises(tractor_reg.TransportClosed):
            await b.send(SAMPLES[1])
        with pytest.raises(tractor_reg.TransportClosed):
            await a.recv()


# -- handshake -----------------------------------------------------------------------------


async def test_handshake_both_sides() -> None:
    a, b = pair()
    results: dict[str, tractor_reg.Aid] = {}
    mine = hello("alice", "alice-uuid", accept_addrs=[("127.0.0.1", 4000), ("/tmp/d", "a.sock")])
    theirs = Handshake(name="bob", uuid="bob-uuid", pid=42, is_registrar=True)

    async def side(chan: Channel, msg: Handshake, key: str) -> None:
        results[key] = await chan.handshake(msg, 5.0)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, a, mine, "a")
            nursery.start_soon(side, b, theirs, "b")
    assert results["a"].uid == ("bob", "bob-uuid")
    assert results["a"].is_registrar is True and results["a"].pid == 42
    assert results["b"].uid == ("alice", "alice-uuid")
    assert results["b"].accept_addrs == (
        tractor_reg.TCPAddress("127.0.0.1", 4000),
        tractor_reg.UDSAddress("/tmp/d", "a.sock"),
    )
    assert a.aid == results["a"] and b.aid == results["b"]
    assert mine.version == PROTOCOL_VERSION


async def test_handshake_timeout(autojump_clock: trio.testing.MockClock) -> None:
    """The peer never answers: HandshakeError once the deadline passes, not before."""
    a, b = pair()
    with trio.fail_after(60):
        start = trio.current_time()
        with pytest.raises(tractor_reg.HandshakeError, match="not completed within 5"):
            await a.handshake(hello(), 5.0)
        assert trio.current_time() - start == pytest.approx(5.0)
    assert not a.handshaken
    with pytest.raises(tractor_reg.HandshakeError, match="has not completed"):
        a.aid  # noqa: B018 - reading the property is the check
    # Our hello did go out first.
    assert await b.recv() == hello()


async def test_handshake_timeout_on_half_a_frame(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.memory_stream_pair()
    chan = Channel(left)
    data = frame(encode(hello("slow", "slow-uuid")))
    await right.send_all(data[:-2])
    with trio.fail_after(60), pytest.raises(tractor_reg.HandshakeError):
        await chan.handshake(hello(), 2.0)


async def test_handshake_version_mismatch() -> None:
    other = Handshake(name="new", uuid="u", pid=1, is_registrar=False, version=PROTOCOL_VERSION + 1)
    chan = Channel(ScriptedStream([wire(other)]))
    with trio.fail_after(5), pytest.raises(tractor_reg.HandshakeError, match="version"):
        await chan.handshake(hello(), 5.0)
    assert not chan.handshaken


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(SAMPLES[1], id="call"),
        pytest.param(SAMPLES[3], id="return"),
        pytest.param(SAMPLES[7], id="error"),
        pytest.param(SAMPLES[8], id="cancel"),
        pytest.param(Handshake(name="", uuid="u", pid=1, is_registrar=False), id="empty-name"),
        pytest.param(Handshake(name="n", uuid="", pid=1, is_registrar=False), id="empty-uuid"),
        pytest.param(hello(accept_addrs=[("h", 70000)]), id="port-out-of-range"),
        pytest.param(hello(accept_addrs=[("", 1)]), id="empty-host"),
        pytest.param(hello(accept_addrs=[("/d", "")]), id="empty-uds-filename"),
    ],
)
async def test_handshake_refuses_bad_first_frame(first: Msg) -> None:
    chan = Channel(ScriptedStream([wire(first)]))
    with trio.fail_after(5), pytest.raises(tractor_reg.HandshakeError):
        await chan.handshake(hello(), 5.0)
    assert not chan.handshaken


async def test_handshake_eof_and_garbage() -> None:
    with trio.fail_after(5):
        with pytest.raises(tractor_reg.TransportClosed):
            await Channel(ScriptedStream([])).handshake(hello(), 5.0)
        with pytest.raises(tractor_reg.ProtocolError):
            await Channel(ScriptedStream([frame(b"\xc1")])).handshake(hello(), 5.0)
        with pytest.raises(tractor_reg.FrameTooLarge):
            await Channel(ScriptedStream([HEADER.pack(100)]), max_frame_size=10).handshake(
                hello(), 5.0
            )


# -- calls over a channel ------------------------------------------------------------------


async def test_call_return_and_error_delivery() -> None:
    a, b = pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                # The "remote" side: answer the first call, fail the second.
                first = await b.recv()
                second = await b.recv()
                assert isinstance(first, Call) and isinstance(second, Call)
                assert first.cid != second.cid
                await b.send(Return(cid=first.cid, value=first.kwargs["x"] * 2))
                await b.send(Error(cid=second.cid, type_name="KeyError", message="'k'"))

            async def pump() -> None:
                # What an actor's message loop does for answers.
                while True:
                    msg = await a.recv()
                    assert isinstance(msg, Return | Error)
                    a.deliver(msg)

            nursery.start_soon(serve)
            nursery.start_soon(pump)
            results: dict[str, Any] = {}

            async def ok() -> None:
                results["ok"] = await a.call("m", "double", {"x": 21})

            async def bad() -> None:
                with pytest.raises(tractor_reg.RemoteActorError) as info:
                    await a.call("m", "fail", {})
                results["bad"] = info.value

            async with trio.open_nursery() as calls:
                calls.start_soon(ok)
                await trio.testing.wait_all_tasks_blocked()
                calls.start_soon(bad)
            nursery.cancel_scope.cancel()
    assert results["ok"] == 42
    assert results["bad"].type_name == "KeyError"


async def test_cancelled_call_sends_cancel_call() -> None:
    a, b = pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.call, "m", "forever", {})
            call = await b.recv()
            assert isinstance(call, Call)
            nursery.cancel_scope.cancel()  # the caller gives up waiting
        assert await b.recv() == CancelCall(cid=call.cid)


async def test_aclose_fails_pending_calls() -> None:
    a, b = pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def caller() -> None:
                with pytest.raises(tractor_reg.TransportClosed):
                    await a.call("m", "f", {})

            nursery.start_soon(caller)
            assert isinstance(await b.recv(), Call)
            await a.aclose()


async def test_deliver_for_unknown_cid_is_ignored() -> None:
    a, _ = pair()
    a.deliver(Return(cid=12345, value=1))
    a.deliver(Error(cid=12345, type_name="X", message="y"))
