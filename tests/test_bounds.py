"""Bounded work per peer and in total: hostile peers (tests/rpc_targets/flood.py) against
a registrar process, its memory measured (RSS) while they run; the frame deadline, the
per-host connection cap and rate-limited warnings about bad peers."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

import tractor_reg
from tests.procs import Proc, eventually, python, registrar_argv, spawn, wait_ready
from tests.rpc_targets.hostile import RawPeer, client, frame, hello, raw_peer
from tractor_reg._msg import Error, Handshake

MiB = 1024 * 1024


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@contextmanager
def registrar(addr: tractor_reg.TCPAddress, *extra: str) -> Iterator[Proc]:
    with spawn(registrar_argv(str(addr), extra=["--log-level", "warning", *extra])) as proc:
        wait_ready(proc)
        yield proc


@contextmanager
def hostile(mode: str, addr: tractor_reg.TCPAddress, number: int) -> Iterator[Proc]:
    argv = python("-m", "tests.rpc_targets.flood", mode, addr.host, str(addr.port), str(number))
    with spawn(argv) as proc:
        yield proc


async def still_served(addr: tractor_reg.TCPAddress, tag: str) -> None:
    """A well-behaved peer registers and looks itself up while the flood goes on."""
    with trio.fail_after(10):
        async with client(addr, f"good-{tag}", f"good-{tag}-uuid") as good:
            assert await good.reg(
                "register_actor", uid=[f"good-{tag}", f"good-{tag}-uuid"], addr=[["127.0.0.1", 9]]
            )
            assert await good.reg("find_actor", name=f"good-{tag}") == [["127.0.0.1", 9]]


@pytest.mark.timeout(90)
async def test_a_call_flood_that_never_reads_is_bounded(reg_addr: tractor_reg.TCPAddress) -> None:
    """One connection sends wait_for_actor calls and never reads an answer: the
    registrar runs at most max_calls_per_channel of them, refuses the rest, stops reading
    that peer when its refusals go unread (the flooder stalls), its memory stays
    bounded, others are served, and SIGTERM stops it promptly."""
    with registrar(reg_addr) as reg:
        before = rss(reg.pid)
        with hostile("calls", reg_addr, 30_000) as flood:
            done = await flood.await_line("DONE", timeout=60)
            grown = rss(reg.pid) - before
            print("flood:", done, f"grown {grown / MiB:.1f} MiB")
            assert "stalled=1" in done, done  # the registrar stopped reading it
            assert grown < 80 * MiB, f"registrar grew by {grown / MiB:.0f} MiB ({done})"
            await still_served(reg_addr, "calls")
            started = time.monotonic()
            reg.signal(signal.SIGTERM)
            assert await reg.await_exit(timeout=15) == 0
            assert time.monotonic() - started < 6
        assert "max_calls_per_channel" in reg.stderr_tail(20000)


@pytest.mark.timeout(90)
async def test_almost_complete_frames_are_bounded_in_total(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """60 connections each send all but 100 bytes of a frame just under 4 MiB: the
    registrar buffers at most max_buffered_bytes (64 MiB by default) of them at once
    (the others are not read: their senders wait), so its memory stays far below
    60 x 4 MiB; small calls from other peers are still served."""
    with registrar(reg_addr) as reg:
        before = rss(reg.pid)
        with hostile("frames", reg_addr, 60) as flood:
            done = await flood.await_line("DONE", timeout=60)
            grown = rss(reg.pid) - before
            print("frames:", done, f"grown {grown / MiB:.1f} MiB")
            assert grown < 110 * MiB, f"registrar grew by {grown / MiB:.0f} MiB ({done})"
            await still_served(reg_addr, "frames")


@pytest.mark.parametrize("trickle", [False, True], ids=["stalls", "trickles"])
async def test_a_started_frame_must_finish_within_the_frame_deadline(
    reg_addr: tractor_reg.TCPAddress, trickle: bool
) -> None:
    """A peer that sends a frame's header and then stalls (or trickles a byte at a time)
    is told FrameTimeout and dropped at the deadline; what is stored stays."""
    with trio.fail_after(20):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], frame_deadline=0.5):
            async with client(reg_addr, "keeper") as keeper:
                await keeper.reg(
                    "register_actor", uid=["keeper", "keeper-uuid"], addr=[["127.0.0.1", 7]]
                )
                async with client(reg_addr, "slow") as slow:
                    started = trio.current_time()
                    await slow.send_raw((1000).to_bytes(4, "big") + b"\x81")
                    if trickle:
                        # A byte every 50 ms up to just before the deadline: progress
                        # does not extend it.
                        with trio.move_on_after(0.4):
                            while True:
                                await slow.send_raw(b"\xa1")
                                await trio.sleep(0.05)
                    msg = await slow.recv()
                    assert isinstance(msg, Error) and msg.type_name == "FrameTimeout", msg
                    await slow.expect_closed()
                    assert trio.current_time() - started < 2.5
                assert await keeper.reg("find_actor", name="keeper") == [["127.0.0.1", 7]]


async def _open_from(source: str, addr: tractor_reg.TCPAddress) -> RawPeer:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect((addr.host, addr.port))
    return RawPeer(trio.SocketStream(sock))


async def test_one_host_cannot_take_every_connection(reg_addr: tractor_reg.TCPAddress) -> None:
    """Idle (handshaken) connections from 127.0.0.2 fill their host's share only: the
    excess is refused with LimitExceeded naming the host, and a peer from 127.0.0.1
    is still admitted."""
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(
            registry_addrs=[reg_addr], max_connections=12, max_connections_per_host=8
        ):
            peers = [await _open_from("127.0.0.2", reg_addr) for _ in range(12)]
            try:
                admitted = refused = 0
                for i, peer in enumerate(peers):
                    first = await peer.recv()
                    if isinstance(first, Handshake):
                        await peer.send(hello(f"idle{i}", f"idle-{i}"))
                        admitted += 1
                    else:
                        assert isinstance(first, Error) and first.type_name == "LimitExceeded"
                        assert "127.0.0.2" in first.message
                        await peer.expect_closed()
                        refused += 1
                assert (admitted, refused) == (8, 4)
                async with client(reg_addr, "other-host") as other:
                    assert await other.reg("ping")
            finally:
                for peer in peers:
                    await peer.aclose()


async def test_unix_socket_peers_count_per_user(uds_dir: str) -> None:
    """Over Unix sockets the 'host' is the dialling user: this test's connections share
    one per-host allowance."""
    addr = tractor_reg.UDSAddress(uds_dir, "reg.sock")
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(
            registry_addrs=[addr], enable_transports=["uds"], max_connections_per_host=2
        ):
            async with raw_peer(addr) as a, raw_peer(addr) as b, raw_peer(addr) as c:
                assert isinstance(await a.recv(), Handshake)
                assert isinstance(await b.recv(), Handshake)
                msg = await c.recv()
                assert isinstance(msg, Error) and msg.type_name == "LimitExceeded"
                assert "uid:" in msg.message


def _warnings_about(text: str, host: str) -> list[str]:
    return [ln for ln in text.splitlines() if "WARNING" in ln and host in ln]


@pytest.mark.timeout(60)
async def test_a_connect_loop_of_bad_peers_writes_little_log(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """300 connections in a row each sending a garbage handshake: one WARNING naming
    the peer per interval (10 s by default), not one per connection."""
    with registrar(reg_addr) as reg:
        with hostile("garbage", reg_addr, 300) as loop:
            await loop.await_line("DONE", timeout=40)
            await still_served(reg_addr, "log")
        log_text = reg.stderr_tail(1_000_000)
        warned = _warnings_about(log_text, "127.0.0.1")
        assert 1 <= len(warned) <= 3, warned[:5]
        assert len(log_text) < 20_000


@pytest.mark.timeout(60)
async def test_held_back_warnings_are_counted(reg_addr: tractor_reg.TCPAddress) -> None:
    """With --peer-log-interval, the next warning about a peer says how many were held
    back since the last."""
    with registrar(reg_addr, "--peer-log-interval", "0.3") as reg:
        with hostile("garbage", reg_addr, 100) as loop:
            await loop.await_line("DONE", timeout=40)

        async def one_more_bad_peer() -> str:
            async with raw_peer(reg_addr) as bad:
                await bad.send_raw(frame(b"\xc1"))
                with trio.fail_after(5):
                    while await bad.stream.receive_some(65536):
                        pass
            return reg.stderr_tail(1_000_000)

        text = await eventually(
            "a warning counting the held-back ones",
            one_more_bad_peer,
            lambda text: "more warning(s) about 127.0.0.1" in text,
            10,
            reg,
        )
        counts = [int(n) for n in re.findall(r"(\d+) more warning\(s\) about 127\.0\.0\.1", text)]
        assert sum(counts) + len(_warnings_about(text, "127.0.0.1")) >= 100, text[-2000:]


async def test_serve_limit_flags_apply(reg_addr: tractor_reg.TCPAddress) -> None:
    """`serve --max-connections-per-host 2 --max-calls-per-channel 1`: a third
    connection from this host is refused, and a second concurrent call is refused with
    LimitExceeded while the first still runs."""
    with registrar(reg_addr, "--max-connections-per-host", "2", "--max-calls-per-channel", "1"):
        with trio.fail_after(20):
            async with client(reg_addr, "a") as a, raw_peer(reg_addr) as b:
                assert isinstance(await b.recv(), Handshake)
                async with raw_peer(reg_addr) as c:
                    msg = await c.recv()
                    assert isinstance(msg, Error) and msg.type_name == "LimitExceeded"
                await a.send_call("self", "wait_for_actor", name="nobody")
                reply = await a.call("self", "wait_for_actor", name="nobody-either")
                assert isinstance(reply, Error) and reply.type_name == "LimitExceeded"
                assert await a.reg("find_actor", name="nobody") is None  # inline: still served


VICTIM = """
import json, sys, trio, tractor_reg
async def main():
    async with tractor_reg.open_root_actor(
        name="victim", registry_addrs=[("127.0.0.1", int(sys.argv[1]))],
        max_connections_per_host=3,
    ) as actor:
        print("VICTIM", json.dumps([actor.uuid, list(actor.accept_addrs[0])]), flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


async def test_taking_an_actors_slots_does_not_get_it_evicted(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """A peer that fills a live actor's connection slots and then reports its address
    stale (or registers it as its own) evicts nothing: the actor refusing the registrar's
    probe for being full is an answer, so it counts as alive."""
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr]):
            with spawn(python("-c", VICTIM, str(reg_addr.port))) as victim:
                line = await victim.await_line("VICTIM")
                uuid, addr = json.loads(line.split(" ", 1)[1])
                victim_addr = tractor_reg.TCPAddress(addr[0], addr[1])
                squatters: list[RawPeer] = []
                try:
                    for i in range(3):  # every slot the victim has for this host
                        stream = await trio.open_tcp_stream(*victim_addr)
                        squatter = RawPeer(stream)
                        await squatter.handshake("squatter", f"squatter-{i}")
                        squatters.append(squatter)
                    async with client(reg_addr, "attacker") as attacker:
                        before = await attacker.reg("find_actors", name="victim")
                        assert await attacker.reg("delete_addr", addr=list(victim_addr)) is False
                        stolen = await attacker.call(
                            "self",
                            "register_actor",
                            uid=["victim", "evil-uuid"],
                            addr=[list(victim_addr)],
                        )
                        assert isinstance(stolen, Error), stolen
                        assert stolen.type_name == "PermissionDenied", stolen
                        assert await attacker.reg("find_actors", name="victim") == before
                        assert [e["uid"][1] for e in before] == [uuid]
                finally:
                    for squatter in squatters:
                        await squatter.aclose()
