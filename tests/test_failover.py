"""Failover around frozen registrars: SIGSTOPped registrar processes, half-open peers
that take connections and never speak, a registrar that resumes after the store changed,
and a SQLite writer frozen inside its transaction."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import tractor_reg
from tests.procs import (
    Proc,
    eventually,
    joiner_argv,
    joiner_ready,
    new_addr,
    parse_joiner,
    python,
    reader,
    registrar_argv,
    registrars,
    spawn,
    sqlite_url,
    stderr_tails,
    wait_ready,
)
from tests.rpc_targets import funcs
from tractor_reg._msg import Error, Return

#: Deadlines of the clients under test: a call that pays one of them is obvious.
DEADLINE = 3.0
#: What a lookup that does not wait on the frozen registrar takes at most (generous: the
#: machine is shared; a lookup takes milliseconds).
QUICK = 1.0
#: How long the resumed-registrar test keeps A stopped at least (seconds).
STOP = 1.0


@contextmanager
def frozen(kind: str) -> Iterator[tractor_reg.TCPAddress]:
    """An address that takes connections and never answers: a registrar process
    stopped with SIGSTOP, or a half-open listener script."""
    if kind == "sigstop":
        addr = new_addr()
        with spawn(registrar_argv(str(addr))) as proc:
            wait_ready(proc)
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                yield addr
            finally:
                os.kill(proc.pid, signal.SIGCONT)
    else:
        with spawn(python("-m", "tests.rpc_targets.half_open")) as proc:
            port = int(proc.wait_line("READY").split()[1])
            yield tractor_reg.TCPAddress("127.0.0.1", port)


@contextmanager
def healthy_with_svc() -> Iterator[tuple[tractor_reg.TCPAddress, Proc]]:
    """A registrar that answers, and an actor ``svc`` registered with it."""
    addr = new_addr()
    with spawn(registrar_argv(str(addr))) as reg:
        wait_ready(reg)
        with spawn(joiner_argv("svc", str(addr))) as svc:
            joiner_ready(svc)
            yield addr, svc


async def _timed_lookup(name: str) -> tuple[float, Any]:
    started = time.monotonic()
    async with tractor_reg.find_actor(name) as portal:
        result = None if portal is None else await portal.run(funcs.add, a=1, b=2)
    return time.monotonic() - started, result


@pytest.mark.parametrize("kind", ["sigstop", "half_open"])
@pytest.mark.parametrize("frozen_first", [True, False], ids=["frozen_first", "frozen_last"])
async def test_boot_joins_the_registrar_that_answers_past_a_frozen_one(
    kind: str, frozen_first: bool
) -> None:
    with healthy_with_svc() as (good, _svc), frozen(kind) as bad:
        addrs = [bad, good] if frozen_first else [good, bad]
        with trio.fail_after(4 * DEADLINE):
            started = time.monotonic()
            async with tractor_reg.open_root_actor(
                name="client",
                registry_addrs=addrs,
                handshake_timeout=DEADLINE,
                call_timeout=DEADLINE,
            ) as actor:
                booted = time.monotonic() - started
                print(f"\nboot past a {kind} address ({addrs.index(bad)}): {booted:.3f}s")
                assert not actor.is_registrar
                # joined the registrar that answered, well before the silent address's
                # handshake deadline
                assert booted < DEADLINE / 2, f"boot took {booted:.2f}s"
                # no lookup waits on the frozen address: not the first, not any later
                for _ in range(3):
                    took, result = await _timed_lookup("svc")
                    assert result == 3
                    assert took < QUICK, f"a lookup took {took:.2f}s"
                took, result = await _timed_lookup("nobody")
                assert result is None and took < QUICK, f"a miss took {took:.2f}s"
                async with tractor_reg.query_actor("svc") as (found, _):
                    assert found is not None
            # leaving costs no frozen-registrar deadline either
            assert time.monotonic() - started < 2 * DEADLINE


@pytest.mark.parametrize("kind", ["sigstop", "half_open"])
async def test_boot_refuses_when_no_registrar_answers_and_an_address_is_silent(
    kind: str,
) -> None:
    absent = new_addr()
    with frozen(kind) as bad:
        with trio.fail_after(10):
            with pytest.raises(RuntimeError, match="did not answer the handshake") as info:
                async with tractor_reg.open_root_actor(
                    registry_addrs=[bad, absent], handshake_timeout=0.5
                ):
                    pass
        assert str(bad) in str(info.value)
        # the free address was not bound either: nothing listens there
        with pytest.raises(OSError):
            await trio.open_tcp_stream(absent.host, absent.port)


@pytest.mark.sqlite
async def test_running_client_stops_paying_for_a_frozen_registrar(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "reg.db")
    with registrars(url) as [(a, reg_a), (b, _reg_b)]:
        with spawn(joiner_argv("svc", str(a), str(b))) as svc:
            joiner_ready(svc)
            with trio.fail_after(30):
                async with tractor_reg.open_root_actor(
                    name="client",
                    registry_addrs=[a, b],
                    handshake_timeout=DEADLINE,
                    call_timeout=DEADLINE,
                ):
                    assert (await _timed_lookup("svc"))[1] == 3
                    os.kill(reg_a.pid, signal.SIGSTOP)
                    try:
                        # The first lookup finds A silent (one deadline at most) ...
                        took, result = await _timed_lookup("svc")
                        assert result == 3 and took < DEADLINE + QUICK
                        # ... and no later one waits on it: B answered last, A is skipped
                        for _ in range(5):
                            took, result = await _timed_lookup("svc")
                            assert result == 3
                            assert took < QUICK, f"a lookup after failover took {took:.2f}s"
                        took, result = await _timed_lookup("nobody")
                        assert result is None and took < QUICK, f"a miss took {took:.2f}s"
                        started = time.monotonic()
                        async with tractor_reg.query_actor("svc") as (found, _):
                            assert found is not None
                        async with tractor_reg.wait_for_actor("svc") as portal:
                            assert await portal.run(funcs.add, a=2, b=2) == 4
                        took = time.monotonic() - started
                        assert took < 2 * QUICK, f"query + wait took {took:.2f}s"
                    finally:
                        os.kill(reg_a.pid, signal.SIGCONT)


@pytest.mark.sqlite
async def test_resumed_registrar_does_not_answer_from_its_stale_view(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "reg.db")
    with registrars(url) as [(a, reg_a), (b, _reg_b)]:
        with spawn(joiner_argv("svc", str(b))) as old:
            old_addrs = parse_joiner(old.wait_line("READY", timeout=15))[1]
            with trio.fail_after(40):
                async with reader(a, "stale") as peer:

                    async def at_a() -> Any:
                        return await peer.reg("find_actor", name="svc")

                    await eventually("A sees svc", at_a, lambda v: v == old_addrs, 10, reg_a)
                    os.kill(reg_a.pid, signal.SIGSTOP)
                    stopped = trio.current_time()
                    try:
                        # queued in A's socket while it is stopped
                        cid = await peer.send_call("self", "find_actor", name="svc")
                        with spawn(joiner_argv("svc", str(b))) as new:
                            new_addrs = parse_joiner(await new.await_line("READY", timeout=15))[1]
                            async with reader(b, "fresh") as at_b:
                                assert await at_b.reg("find_actor", name="svc") == new_addrs
                            # the fault: a stop of a second, as a slow machine or an
                            # operator's SIGSTOP makes it (not a wait for any state)
                            await trio.sleep_until(stopped + STOP)
                            os.kill(reg_a.pid, signal.SIGCONT)
                            reply = await peer.recv()
                            assert isinstance(reply, Return) and reply.cid == cid, reply
                            assert reply.value == new_addrs, (
                                f"A answered from its view of before the stop: {reply.value} "
                                f"(old svc {old_addrs}, new svc {new_addrs})"
                                + stderr_tails((reg_a,))
                            )
                    finally:
                        os.kill(reg_a.pid, signal.SIGCONT)


@pytest.mark.sqlite
async def test_frozen_sqlite_writer_blocks_writes_not_reads(tmp_path: Path) -> None:
    """The documented bound: a process stopped inside a write transaction holds the
    file's write lock for its whole stop. Meanwhile the healthy registrar answers every
    lookup from its view at once, and every write fails with StoreBusy after
    ``busy_timeout``; the first write after the lock is gone succeeds."""
    db = tmp_path / "reg.db"
    busy = 0.5
    addr = new_addr()
    url = sqlite_url(db, busy_timeout=str(busy))
    with spawn(registrar_argv(str(addr), extra=["--backend", url])) as reg:
        wait_ready(reg)
        with spawn(joiner_argv("svc", str(addr))) as svc:
            svc_addrs = parse_joiner(svc.wait_line("READY", timeout=15))[1]
            with spawn(python("-m", "tests.rpc_targets.sqlite_lock", str(db))) as holder:
                holder.wait_line("LOCKED")
                os.kill(holder.pid, signal.SIGSTOP)
                with trio.fail_after(30):
                    async with reader(addr, "frozen-writer") as peer:
                        me = ["reader", f"reader-frozen-writer-{os.getpid()}"]
                        lookups: list[float] = []
                        for _ in range(20):
                            started = time.monotonic()
                            assert await peer.reg("find_actor", name="svc") == svc_addrs
                            lookups.append(time.monotonic() - started)
                        writes: list[float] = []
                        for i in range(3):
                            started = time.monotonic()
                            reply = await peer.call(
                                "self",
                                "register_actor",
                                uid=me,
                                addr=[["127.0.0.1", 40000 + i]],
                            )
                            writes.append(time.monotonic() - started)
                            assert isinstance(reply, Error), reply
                            assert reply.type_name == "StoreBusy", reply
                        print(
                            f"\nfrozen writer: lookups max {max(lookups) * 1000:.1f} ms, "
                            f"writes refused after {[round(w, 2) for w in writes]} s "
                            f"(busy_timeout {busy} s)"
                        )
                        assert max(lookups) < QUICK
                        assert all(busy * 0.8 <= w < busy + 2.5 for w in writes), writes
                        holder.kill_group()  # (SIGKILL reaches a stopped process)
                        started = time.monotonic()
                        reply = await peer.call(
                            "self",
                            "register_actor",
                            uid=me,
                            addr=[["127.0.0.1", 40010]],
                        )
                        assert isinstance(reply, Return), reply
                        print(f"first write after the lock: {time.monotonic() - started:.3f} s")
