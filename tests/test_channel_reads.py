"""Who reads a channel's socket: a lone caller reads its own answer, the message loop the rest.

A caller waiting for the only outstanding answer on a plain socket channel takes the
socket over from the message loop and reads the answer itself; every other frame it
meets (other callers' answers, calls from the peer, garbage, EOF) is routed exactly as
the message loop would have handled it. These tests run over real socket pairs and, at
the end, between real actor processes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import tractor_reg
from tests.rpc_targets import funcs
from tractor_reg._ipc import Channel, open_stream
from tractor_reg._msg import Call, CancelCall, Error, Msg, Return, encode

FUNCS = "tests.rpc_targets.funcs"
Pair = tuple[Channel, trio.SocketStream]


def frame(msg: Msg) -> bytes:
    payload = encode(msg)
    return len(payload).to_bytes(4, "big") + payload


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """A channel over one end of a Unix socket pair, and the raw other end."""
    left, right = trio.socket.socketpair()
    chan, far = Channel(trio.SocketStream(left)), trio.SocketStream(right)
    try:
        yield chan, far
    finally:
        await chan.aclose()
        await far.aclose()


class Loop:
    """What an actor's message loop does with a channel, recording what it saw."""

    def __init__(
        self,
        chan: Channel,
        answer: Callable[[Call], Awaitable[Any]] | None = None,
        inline: bool = False,
    ) -> None:
        self.chan = chan
        self.answer = answer
        # Inline: answer in the loop itself, as an actor runs its non-blocking endpoints.
        self.inline = inline
        self.delivered: list[int] = []
        self.calls: list[Call] = []
        self.ended_by: BaseException | None = None

    async def run(self, nursery: trio.Nursery) -> None:
        try:
            while True:
                try:
                    msg = await self.chan.next_inbound()
                except (tractor_reg.TransportClosed, tractor_reg.ProtocolError) as exc:
                    self.ended_by = exc
                    return
                if isinstance(msg, Return | Error):
                    self.delivered.append(msg.cid)
                    self.chan.deliver(msg)
                elif isinstance(msg, Call):
                    self.calls.append(msg)
                    if self.inline:
                        await self._serve(msg)
                    else:
                        nursery.start_soon(self._serve, msg)
        finally:
            await self.chan.aclose()

    async def _serve(self, call: Call) -> None:
        assert self.answer is not None
        await self.chan.send(Return(cid=call.cid, value=await self.answer(call)))


class Peer:
    """The raw far end: reads frames and writes frames or bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.chan = Channel(stream)

    async def recv(self) -> Msg:
        return await self.chan.recv()

    async def send(self, msg: Msg) -> None:
        await self.chan.send(msg)


async def test_a_lone_caller_reads_its_own_answers(pair: Pair) -> None:
    chan, far = pair
    peer = Peer(far)
    loop = Loop(chan)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def echo_server() -> None:
                while True:
                    call = await peer.recv()
                    assert isinstance(call, Call)
                    # Answer once the caller waits (it has taken the socket over).
                    await trio.testing.wait_all_tasks_blocked()
                    await peer.send(Return(cid=call.cid, value=call.kwargs["x"]))

            nursery.start_soon(echo_server)
            nursery.start_soon(loop.run, nursery)
            # The first call marks the channel as one this side calls over; the loop may
            # already sit in a receive no caller can take over, and read that answer.
            assert await chan.call("m", "f", {"x": -1}) == -1
            loop.delivered.clear()
            for i in range(50):
                assert await chan.call("m", "f", {"x": i}) == i
            nursery.cancel_scope.cancel()
    # Every later answer was read by its caller: the loop never had one to hand over.
    assert loop.delivered == []


async def test_answers_out_of_order_reach_the_right_callers(pair: Pair) -> None:
    chan, far = pair
    peer = Peer(far)
    loop = Loop(chan)
    results: dict[str, Any] = {}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run, nursery)

            async def caller(key: str) -> None:
                results[key] = await chan.call("m", key, {})

            async with trio.open_nursery() as callers:
                callers.start_soon(caller, "first")  # leads: the only outstanding call
                first = await peer.recv()
                callers.start_soon(caller, "second")  # follows
                second = await peer.recv()
                assert isinstance(first, Call) and isinstance(second, Call)
                # Answer in reverse order: the follower's answer reaches the leader first.
                await peer.send(Return(cid=second.cid, value="for second"))
                await peer.send(Return(cid=first.cid, value="for first"))
            nursery.cancel_scope.cancel()
    assert results == {"first": "for first", "second": "for second"}


async def test_a_call_from_the_peer_is_served_while_the_caller_reads(
    pair: Pair,
) -> None:
    """The peer calls back over the same channel before it answers: no deadlock."""
    chan, far = pair
    peer = Peer(far)

    async def pong(call: Call) -> Any:
        return ["pong", call.kwargs["n"]]

    loop = Loop(chan, answer=pong)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run, nursery)

            async def nested_server() -> None:
                outer = await peer.recv()
                assert isinstance(outer, Call)
                await peer.send(Call(cid=1, ns="m", func="ping", kwargs={"n": 7}))
                inner = await peer.recv()
                assert isinstance(inner, Return) and inner.cid == 1
                await peer.send(Return(cid=outer.cid, value=inner.value))

            nursery.start_soon(nested_server)
            assert await chan.call("m", "outer", {}) == ["pong", 7]
            nursery.cancel_scope.cancel()
    assert [c.func for c in loop.calls] == ["ping"]


async def test_a_cancelled_reader_hands_the_socket_back(pair: Pair) -> None:
    chan, far = pair
    peer = Peer(far)
    loop = Loop(chan)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run, nursery)
            results: list[Any] = []

            async def follower() -> None:
                results.append(await chan.call("m", "second", {}))

            async with trio.open_nursery() as callers:
                leader = trio.CancelScope()

                async def lead() -> None:
                    with leader:
                        await chan.call("m", "never answered", {})

                callers.start_soon(lead)
                first = await peer.recv()
                callers.start_soon(follower)
                second = await peer.recv()
                assert isinstance(first, Call) and isinstance(second, Call)
                leader.cancel()  # the reading caller gives up
                assert await peer.recv() == CancelCall(cid=first.cid)
                await peer.send(Return(cid=second.cid, value="still delivered"))
            assert results == ["still delivered"]
            # The message loop read that answer; a later lone call reads its own again.
            assert loop.delivered == [second.cid]

            async def answer_one() -> None:
                call = await peer.recv()
                assert isinstance(call, Call)
                await peer.send(Return(cid=call.cid, value="third"))

            nursery.start_soon(answer_one)
            assert await chan.call("m", "third", {}) == "third"
            assert loop.delivered == [second.cid]
            nursery.cancel_scope.cancel()


async def test_a_frame_split_across_the_hand_over_stays_whole(pair: Pair) -> None:
    """The loop holds half a frame when a caller takes the socket over."""
    chan, far = pair
    peer = Peer(far)

    async def answer(call: Call) -> Any:
        return call.kwargs["payload"]

    loop = Loop(chan, answer=answer)
    payload = os.urandom(3000).hex()
    unsolicited = frame(Call(cid=5, ns="m", func="take", kwargs={"payload": payload}))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run, nursery)

            async def answer_next(value: Any) -> Call:
                call = await peer.recv()
                assert isinstance(call, Call)
                await peer.send(Return(cid=call.cid, value=value))
                return call

            async with trio.open_nursery() as warming:
                warming.start_soon(answer_next, 0)
                # After this call the loop receives in a scope a caller can cancel.
                assert await chan.call("m", "warm", {}) == 0
            await far.send_all(unsolicited[:1000])
            await trio.testing.wait_all_tasks_blocked()  # the loop buffered that half

            async def finish() -> None:
                call = await peer.recv()
                assert isinstance(call, Call)
                await trio.testing.wait_all_tasks_blocked()  # the caller reads now
                await far.send_all(unsolicited[1000:] + frame(Return(cid=call.cid, value=1)))
                served = await peer.recv()
                assert served == Return(cid=5, value=payload)

            nursery.start_soon(finish)
            assert await chan.call("m", "f", {}) == 1
            with trio.fail_after(5):
                while not loop.calls:
                    await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
    assert loop.calls[0].kwargs == {"payload": payload}
    # The caller read the second half and its own answer (call id 2), not the loop.
    assert 2 not in loop.delivered


async def test_calls_both_ways_with_large_frames_at_once() -> None:
    """Both ends call each other at the same moment with frames larger than the socket
    buffers: every call completes (a caller takes the socket over only once its own
    call is out, so neither end stops reading while it sends)."""
    left, right = trio.socket.socketpair()
    a, b = Channel(trio.SocketStream(left)), Channel(trio.SocketStream(right))

    async def echo(call: Call) -> Any:
        return call.kwargs["x"]

    big = "x" * 2_000_000
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(Loop(a, answer=echo).run, nursery)
                nursery.start_soon(Loop(b, answer=echo).run, nursery)
                assert await a.call("m", "echo", {"x": 1}) == 1
                assert await b.call("m", "echo", {"x": 2}) == 2

                async def calls(chan: Channel) -> None:
                    for _ in range(5):
                        assert await chan.call("m", "echo", {"x": big}) == big

                async with trio.open_nursery() as both:
                    both.start_soon(calls, a)
                    both.start_soon(calls, b)
                nursery.cancel_scope.cancel()
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_peer_flooding_calls_is_slowed_down_while_the_caller_reads() -> None:
    """While a caller reads its own answer, calls from the peer go to the message loop;
    when the loop falls behind (its answers wait to be sent to a peer that does not
    read), the caller hands the socket back, the loop stops reading, and the kernel
    makes the flooding peer wait instead of this side queueing without limit."""
    left, right = trio.socket.socketpair()
    for sock in (left, right):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chan, far = Channel(trio.SocketStream(left)), trio.SocketStream(right)
    peer = Peer(far)

    async def pong(call: Call) -> Any:
        return "pong"

    loop = Loop(chan, answer=pong, inline=True)
    sent = 0
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(loop.run, nursery)

                async def warm() -> None:
                    call = await peer.recv()
                    assert isinstance(call, Call)
                    await peer.send(Return(cid=call.cid, value=None))

                nursery.start_soon(warm)
                await chan.call("m", "warm", {})
                nursery.start_soon(chan.call, "m", "never answered", {})
                assert isinstance(await peer.recv(), Call)
                with trio.move_on_after(1.0):
                    for cid in range(1, 1 << 30):
                        await peer.send(Call(cid=cid, ns="m", func="ping", kwargs={}))
                        sent += 1
                nursery.cancel_scope.cancel()
    finally:
        await chan.aclose()
        await far.aclose()
    # Bounded by the two sockets' small buffers and the caller's hand-back limit.
    assert 0 < sent < 2_000, sent


@pytest.mark.parametrize(
    ("spoil", "ends_loop_with"),
    [
        (b"", tractor_reg.TransportClosed),  # the peer hangs up
        (b"\x00\x00\x00\x03\xc1\xc1\xc1", tractor_reg.ProtocolError),
        ((1 << 31).to_bytes(4, "big"), tractor_reg.ProtocolError),
    ],
    ids=["eof", "undecodable", "oversized"],
)
async def test_the_channel_failing_while_the_caller_reads(
    spoil: bytes, ends_loop_with: type[Exception], pair: Pair
) -> None:
    """EOF or garbage read by the caller: the message loop acts on it as if it had read
    it (drops the channel), and the call fails with TransportClosed."""
    chan, far = pair
    peer = Peer(far)
    loop = Loop(chan)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run, nursery)

            async def fail_channel() -> None:
                assert isinstance(await peer.recv(), Call)
                if spoil:
                    await far.send_all(spoil)
                else:
                    await far.aclose()

            nursery.start_soon(fail_channel)
            with pytest.raises(tractor_reg.TransportClosed):
                await chan.call("m", "f", {})
    assert isinstance(loop.ended_by, ends_loop_with)
    assert chan.closed


async def test_parent_call_answered_through_a_callback_over_the_same_channel(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """The child finds its parent among its connected peers and calls it back over the
    channel on which the parent is still reading its own answer."""
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(
            name="parent", registry_addrs=[reg_addr], enable_modules=[FUNCS]
        ) as an:
            child = await an.start_actor("child", enable_modules=[FUNCS])
            for value in ("one", 2, ["three"]):
                got = await child.run(funcs.find_and_call, name="parent", value=value)
                assert got == value
            await child.cancel_actor()


# -- dialling ------------------------------------------------------------------------------


async def test_connect_refused_and_missing_socket_fail_at_once(uds_dir: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with trio.fail_after(5):
        with pytest.raises(ConnectionRefusedError):
            await open_stream(tractor_reg.TCPAddress("127.0.0.1", closed_port))
        with pytest.raises(FileNotFoundError):
            await open_stream(tractor_reg.UDSAddress(uds_dir, "nobody.sock"))
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(os.path.join(uds_dir, "stale.sock"))
        stale.close()  # the file stays; nobody listens
        with pytest.raises(ConnectionRefusedError):
            await open_stream(tractor_reg.UDSAddress(uds_dir, "stale.sock"))


@pytest.mark.parametrize("transport", ["tcp", "uds"])
async def test_connect_to_a_full_backlog_times_out(transport: str, uds_dir: str) -> None:
    """A listener that never accepts: the connect waits in flight, bounded by its timeout."""
    if transport == "tcp":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        addr: tractor_reg.Address = tractor_reg.TCPAddress(*listener.getsockname())
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(os.path.join(uds_dir, "full.sock"))
        addr = tractor_reg.UDSAddress(uds_dir, "full.sock")
    listener.listen(0)
    held = []
    try:
        with trio.fail_after(10):
            held.append(await open_stream(addr, timeout=2.0))  # fills the backlog
            start = trio.current_time()
            with pytest.raises(TimeoutError, match=r"timed out after 0\.3s"):
                await open_stream(addr, timeout=0.3)
            assert trio.current_time() - start >= 0.3
    finally:
        for stream in held:
            await stream.aclose()
        listener.close()


async def test_uds_connect_waits_for_room_in_the_backlog(uds_dir: str) -> None:
    """Like a blocking connect, a dial to a full Unix socket backlog completes once the
    listener accepts."""
    listener = trio.socket.socket(trio.socket.AF_UNIX)
    await listener.bind(os.path.join(uds_dir, "busy.sock"))
    listener.listen(0)
    addr = tractor_reg.UDSAddress(uds_dir, "busy.sock")
    with trio.fail_after(10):
        first = await open_stream(addr)
        async with trio.open_nursery() as nursery:
            second: list[trio.abc.Stream] = []

            async def dial() -> None:
                second.append(await open_stream(addr, timeout=5.0))

            nursery.start_soon(dial)
            await trio.testing.wait_all_tasks_blocked()
            assert not second  # still waiting for room
            accepted, _ = await listener.accept()  # makes room
        assert len(second) == 1
        await second[0].send_all(b"x")
        accepted2, _ = await listener.accept()
        assert await accepted2.recv(1) == b"x"
    for s in (first, second[0]):
        await s.aclose()
    for raw in (accepted, accepted2, listener):
        raw.close()
