"""Registrar processes over a SQLite file: restarts, crashes, several registrars per file.

Every registrar here is a real ``python -m tractor_reg serve`` process on a real SQLite file
(``poll_interval=0.05``: another process's write is visible within about 50 ms); crashes
are SIGKILL. Lookups go through the registrars' endpoints over TCP, either from a raw
protocol client (:func:`tests.rpc_targets.hostile.client`) or from an in-test root actor.
"""

from __future__ import annotations

import operator
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

import tractor_reg
from tests.conftest import free_port
from tests.procs import (
    Proc,
    await_joiner,
    eventually,
    joiner_argv,
    joiner_ready,
    python,
    registrar_argv,
    spawn,
    wait_ready,
)
from tests.rpc_targets.funcs import whoami
from tests.rpc_targets.hostile import RawPeer, client

pytestmark = pytest.mark.sqlite

POLL = 0.05
T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------


def sqlite_url(db: Path, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"poll_interval": str(POLL), **options}.items())
    return f"sqlite:///{db}?{query}"  # db is absolute: sqlite:////abs/path.db


def new_addr() -> tractor_reg.TCPAddress:
    return tractor_reg.TCPAddress("127.0.0.1", free_port())


def serve_argv(db: Path, addr: tractor_reg.TCPAddress, **options: str) -> list[str]:
    return registrar_argv(str(addr), extra=["--backend", sqlite_url(db, **options)])


@contextmanager
def registrar(db: Path, addr: tractor_reg.TCPAddress, **options: str) -> Iterator[Proc]:
    """A registrar process serving ``addr`` over ``db``, up (READY) when yielded."""
    with spawn(serve_argv(db, addr, **options)) as proc:
        wait_ready(proc)
        yield proc


@contextmanager
def two_registrars(
    db: Path,
) -> Iterator[tuple[tractor_reg.TCPAddress, tractor_reg.TCPAddress, Proc, Proc]]:
    """Registrars A and B on different ports over one file, started at the same time."""
    a, b = new_addr(), new_addr()
    with spawn(serve_argv(db, a)) as proc_a, spawn(serve_argv(db, b)) as proc_b:
        wait_ready(proc_a)
        wait_ready(proc_b)
        yield a, b, proc_a, proc_b


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return ";".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the file directly (read-only, never holding a lock past the call)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def names_in(table: dict[str, Any]) -> set[str]:
    return {key.split(".", 1)[0] for key in table}


def view_of(entries: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """What must agree between two registrars' views (renewals only move expires_at)."""
    return {(e["name"], e["uuid"], e["revision"], repr(e["addrs"])) for e in entries}


@asynccontextmanager
async def reader(addr: tractor_reg.TCPAddress, tag: str) -> AsyncIterator[RawPeer]:
    """A raw client of the registrar at ``addr`` (its uid is never registered)."""
    async with client(addr, "reader", f"reader-{tag}-{os.getpid()}") as peer:
        yield peer


# -- 1. restart ---------------------------------------------------------------------------


async def test_restarted_registrar_answers_before_any_renewal(tmp_path: Path) -> None:
    db = tmp_path / "reg.db"
    addr = new_addr()
    with registrar(db, addr) as first:
        # renews only after 50 s: anything the reborn registrar knows comes from the file
        with spawn(joiner_argv("svc", str(addr), ttl=60, renew=50)) as svc:
            uuid, svc_addrs = joiner_ready(svc)
            with trio.fail_after(10):
                async with reader(addr, "before") as peer:
                    before = await peer.reg("list_entries")
            svc_before = next(e for e in before if e["name"] == "svc")
            first.kill_group()  # SIGKILL
            with registrar(db, addr) as reborn:
                with trio.fail_after(10):
                    async with tractor_reg.open_root_actor(name="probe", registry_addrs=[addr]):
                        async with tractor_reg.get_registry(addr) as portal:
                            found = await portal.run_from_ns("self", "find_actor", name="svc")
                            assert found == svc_addrs, reborn.stderr_tail()
                            entries = await portal.run_from_ns("self", "list_entries")
                        svc_now = next(e for e in entries if e["name"] == "svc")
                        # the very registration made before the crash, not a fresh one
                        assert svc_now["uuid"] == uuid
                        assert svc_now["revision"] == svc_before["revision"]
                        assert svc_now["expires_at"] == svc_before["expires_at"]
                        async with tractor_reg.find_actor("svc", raise_on_none=True) as found_svc:
                            assert isinstance(found_svc, tractor_reg.Portal)
                            assert await found_svc.run(whoami) == ["svc", uuid]


async def test_a_watch_resumes_across_a_registrar_restart(tmp_path: Path) -> None:
    """The reborn registrar serves the change history kept in the file: a watcher
    resuming from before the crash gets what it missed instead of ChangesExpired."""
    db = tmp_path / "reg.db"
    addr = new_addr()
    with registrar(db, addr) as first:
        with spawn(joiner_argv("svc", str(addr), ttl=60, renew=50)) as svc:
            uuid, svc_addrs = joiner_ready(svc)
            first.kill_group()  # SIGKILL
            with registrar(db, addr) as reborn:
                with trio.fail_after(15):
                    async with tractor_reg.open_registry_client([addr]):
                        async for change in tractor_reg.watch("svc", since=0):
                            assert (change.kind, change.uuid) == ("registered", uuid), (
                                reborn.stderr_tail()
                            )
                            assert [tractor_reg.wrap_address(a) for a in change.addrs] == [
                                tractor_reg.wrap_address(a) for a in svc_addrs
                            ]
                            break


async def test_actor_that_died_while_registrar_was_down_expires(tmp_path: Path) -> None:
    db = tmp_path / "reg.db"
    addr = new_addr()
    ttl = 3.0
    with registrar(db, addr) as first:
        # registered after this instant, so its lease ends no earlier than spawned + ttl
        spawned = time.time()
        with spawn(joiner_argv("svc", str(addr), ttl=ttl, renew=0.3)) as svc:
            uuid, _ = joiner_ready(svc)
            first.kill_group()  # SIGKILL the registrar ...
            svc.kill_group()  # ... and, while it is down, the actor
    with registrar(db, addr) as reborn:
        with trio.fail_after(ttl + 10):
            async with reader(addr, "after") as peer:
                table = await peer.reg("get_registry")
                if time.time() < spawned + ttl:
                    # its lease cannot have ended yet: the reborn registrar still lists it
                    assert f"svc.{uuid}" in table, (table, reborn.stderr_tail())
                await eventually(
                    "the dead actor's entry leaving lookups by lease expiry",
                    lambda: peer.reg("find_actor", name="svc"),
                    lambda found: found is None,
                    ttl + 5,
                    reborn,
                )
                assert f"svc.{uuid}" not in await peer.reg("get_registry")
            # ... and the registrar's purge removed it from the file, as an expiry
            await eventually(
                "the purge deleting the row from the file",
                lambda: _rows_of(db, "svc"),
                lambda rows: rows == [],
                5,
                reborn,
            )
    changes = query(
        db, "SELECT kind, reason FROM changes WHERE name = 'svc' AND uuid = ? ORDER BY seq", uuid
    )
    assert changes[-1] == ("delete", "expire"), changes


async def _rows_of(db: Path, name: str) -> list[tuple[Any, ...]]:
    await trio.lowlevel.checkpoint()
    return query(db, "SELECT name, uuid FROM entries WHERE name = ?", name)


# -- 3. crash in a storm ------------------------------------------------------------------

STORM_COUNT = 40_000  # far more than get acknowledged before the kill: the storm is ongoing
STORM_KILL_AFTER = 200


def storm_argv(addr: tractor_reg.TCPAddress) -> list[str]:
    return python(
        "-m",
        "tests.rpc_targets.storm",
        str(addr),
        "--count",
        str(STORM_COUNT),
        "--concurrency",
        "64",
    )


class StdoutLines:
    """Every stdout line of a process, read straight from its pipe (nothing is missed)."""

    def __init__(self, proc: Proc) -> None:
        assert proc.popen.stdout is not None
        self.proc = proc
        self.fd = proc.popen.stdout.fileno()
        self.lines: list[str] = []
        self.eof = False
        self._partial = b""

    def _read(self, timeout: float) -> None:
        import select

        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            chunk = b"\n" if self._partial else b""
        self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        self.lines.extend(c.decode() for c in complete)

    def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                raise AssertionError(
                    f"{what}: not within {timeout}s (eof={self.eof}, exit code "
                    f"{self.proc.popen.poll()}); last lines {self.lines[-5:]!r}; stderr tail:\n"
                    f"{self.proc.stderr_tail()}"
                )
            self._read(min(left, 0.5))

    def to_eof(self, timeout: float) -> bool:
        """Read until EOF; ``False`` if the process kept its stdout open past ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._read(min(left, 0.5))
        return True

    def acked(self) -> set[str]:
        return {line.split()[1] for line in self.lines if line.startswith("ACK ")}


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_sigkill_in_a_storm_loses_no_acknowledged_registration(
    tmp_path: Path, synchronous: str
) -> None:
    db = tmp_path / "reg.db"
    addr = new_addr()
    with registrar(db, addr, synchronous=synchronous) as victim:
        with spawn(storm_argv(addr)) as storm:
            out = StdoutLines(storm)
            out.until(
                lambda: len(out.acked()) >= STORM_KILL_AFTER,
                15,
                f"{STORM_KILL_AFTER} acknowledged registrations",
            )
            os.kill(victim.pid, signal.SIGKILL)  # mid-storm: the workers have calls in flight
            victim.wait(10)
            # every ACK the storm printed must be read: to EOF (it fails once the
            # registrar is gone; if it lingers, killing it closes its stdout)
            if not out.to_eof(10):
                storm.kill_group()
                assert out.to_eof(10), "the storm's stdout did not close after a SIGKILL"
            acked = out.acked()
            assert not [line for line in out.lines if line.startswith(("ERR", "DONE"))], (
                "the registrar refused a registration, or the storm ended before the kill: "
                f"{[line for line in out.lines if not line.startswith('ACK')]!r}"
            )
    assert integrity(db) == "ok"
    with registrar(db, addr, synchronous=synchronous) as reborn:
        with trio.fail_after(10):
            async with reader(addr, "after") as peer:
                entries = await peer.reg("list_entries")
    stored = {e["uuid"]: e["addrs"] for e in entries if e["name"] == "storm"}
    lost = acked - stored.keys()
    assert not lost, (
        f"{len(lost)} of {len(acked)} acknowledged registrations are missing after the crash "
        f"(e.g. {sorted(lost, key=int)[:10]}); {len(stored)} stored; registrar stderr:\n"
        f"{reborn.stderr_tail()}"
    )
    # ... with the registered address (committed rows are whole, not torn)
    for uuid in acked:
        assert stored[uuid] == [["127.0.0.1", 20000 + int(uuid)]], (uuid, stored[uuid])
    # a committed-but-unanswered write may be there too, never an unknown uid
    assert all(0 <= int(uuid) < STORM_COUNT for uuid in stored)
    assert integrity(db) == "ok"


# -- 4. several registrars, one file ------------------------------------------------------


async def test_registration_through_one_is_found_through_the_other(tmp_path: Path) -> None:
    with two_registrars(tmp_path / "reg.db") as (a, b, proc_a, proc_b):
        with (
            spawn(joiner_argv("at-a", str(a))) as at_a,
            spawn(joiner_argv("at-b", str(b))) as at_b,
        ):
            uuid_a, addrs_a = joiner_ready(at_a)
            uuid_b, addrs_b = joiner_ready(at_b)
            with trio.fail_after(10):
                async with reader(a, "a") as via_a, reader(b, "b") as via_b:
                    for peer, name, want in ((via_b, "at-a", addrs_a), (via_a, "at-b", addrs_b)):
                        await eventually(
                            f"{name} found through the other registrar",
                            partial(peer.reg, "find_actor", name=name),
                            partial(operator.eq, want),
                            5,
                            proc_a,
                            proc_b,
                        )
                    for peer in (via_a, via_b):
                        table = await peer.reg("get_registry")
                        assert {f"at-a.{uuid_a}", f"at-b.{uuid_b}"} <= table.keys()


async def test_wait_on_one_registrar_is_woken_by_a_registration_through_the_other(
    tmp_path: Path,
) -> None:
    with two_registrars(tmp_path / "reg.db") as (a, b, _proc_a, proc_b):
        with trio.fail_after(15):
            async with tractor_reg.open_root_actor(name="waiter", registry_addrs=[b]):
                woken = trio.Event()
                got: list[Any] = []

                async def wait() -> None:
                    async with tractor_reg.wait_for_actor("late", registry_addr=b) as portal:
                        got.append(await portal.run(whoami))
                    woken.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(wait)
                    async with tractor_reg.get_registry(b) as portal:
                        assert await portal.run_from_ns("self", "find_actor", name="late") is None
                    # registers only at A; B learns of it from the file
                    with spawn(joiner_argv("late", str(a))) as late:
                        uuid, _ = await await_joiner(late)
                        with trio.move_on_after(5):
                            await woken.wait()
                        assert woken.is_set(), (
                            "wait_for_actor on B was not woken by a registration through A; "
                            f"B stderr:\n{proc_b.stderr_tail()}"
                        )
                assert got == [["late", uuid]]


def is_latest(uuid: str, addrs: list[list[Any]], found: list[dict[str, Any]]) -> bool:
    """``find_actors("x")`` lists x.<uuid> first (at ``addrs``), then the other x if any."""
    other = "x2" if uuid == "x1" else "x1"
    order = [e["uid"] for e in found]
    return order in ([["x", uuid], ["x", other]], [["x", uuid]]) and found[0]["addrs"] == addrs


async def test_latest_registered_is_decided_by_the_store_revision(tmp_path: Path) -> None:
    """x1 through A, then x2 through B: both answer x2 (and so on, alternating)."""
    with two_registrars(tmp_path / "reg.db") as (a, b, proc_a, proc_b):
        addr_of = {uuid: [[str(tmp_path), f"{uuid}.sock"]] for uuid in ("x1", "x2")}
        with trio.fail_after(12):
            async with reader(a, "a") as via_a, reader(b, "b") as via_b:
                revisions = []
                for uuid, at in (("x1", a), ("x2", b), ("x1", b), ("x2", a), ("x1", a)):
                    async with client(at, "x", uuid) as me:
                        answer = await me.reg(
                            "register_actor", uid=["x", uuid], addr=addr_of[uuid], ttl=60
                        )
                    revisions.append(answer["revision"])
                    for peer in (via_a, via_b):
                        await eventually(
                            f"{uuid} (registered through {at}) as the latest through both",
                            partial(peer.reg, "find_actors", name="x"),
                            partial(is_latest, uuid, addr_of[uuid]),
                            5,
                            proc_a,
                            proc_b,
                        )
                        assert await peer.reg("find_actor", name="x") == addr_of[uuid]
                # one store revision sequence, whichever registrar wrote
                assert revisions == sorted(set(revisions)), revisions
                views = [view_of(await p.reg("list_entries")) for p in (via_a, via_b)]
                assert views[0] == views[1]


async def test_purging_by_both_registrars_at_once_is_safe(tmp_path: Path) -> None:
    db = tmp_path / "reg.db"
    short = {"short-a", "short-b", "burst"}
    with two_registrars(db) as (a, b, proc_a, proc_b):
        with (
            spawn(joiner_argv("short-a", str(a), ttl=0.8, renew=0.2)) as j_a,
            spawn(joiner_argv("short-b", str(b), ttl=0.8, renew=0.2)) as j_b,
        ):
            dead = [("short-a", joiner_ready(j_a)[0]), ("short-b", joiner_ready(j_b)[0])]
            j_a.kill_group()
            j_b.kill_group()
        # and many short leases through both at once, so both purge loops find work
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(40):

                    async def burst(i: int = i) -> None:
                        async with client(a if i % 2 else b, "burst", f"burst-{i}") as me:
                            await me.reg(
                                "register_actor",
                                uid=["burst", f"burst-{i}"],
                                addr=[str(tmp_path), f"burst-{i}.sock"],
                                ttl=1.0,
                            )

                    nursery.start_soon(burst)
        dead += [("burst", f"burst-{i}") for i in range(40)]
        with trio.fail_after(12):
            async with reader(a, "a") as via_a, reader(b, "b") as via_b:
                for peer in (via_a, via_b):
                    await eventually(
                        "every short lease gone from lookups",
                        partial(peer.reg, "get_registry"),
                        lambda table: not names_in(table) & short,
                        8,
                        proc_a,
                        proc_b,
                    )
                await eventually(
                    "every expired row purged from the file",
                    lambda: _short_rows(db, short),
                    lambda rows: rows == [],
                    5,
                    proc_a,
                    proc_b,
                )

                async def both_views() -> list[set[tuple[Any, ...]]]:
                    return [view_of(await p.reg("list_entries")) for p in (via_a, via_b)]

                await eventually(
                    "both registrars' views agreeing",
                    both_views,
                    lambda views: views[0] == views[1],
                    3,
                    proc_a,
                    proc_b,
                )
        # each lease ended exactly once in the store, by expiry, whoever purged it
        for name, uuid in dead:
            deletes = query(
                db,
                "SELECT reason FROM changes WHERE kind = 'delete' AND name = ? AND uuid = ?",
                name,
                uuid,
            )
            assert deletes == [("expire",)], (name, uuid, deletes)
        assert integrity(db) == "ok"
        for proc in (proc_a, proc_b):
            proc.signal(signal.SIGTERM)
            assert proc.wait(10) == 0, proc.stderr_tail()
            assert "Traceback" not in proc.stderr_tail(), proc.stderr_tail()
    assert integrity(db) == "ok"


async def _short_rows(db: Path, names: set[str]) -> list[tuple[Any, ...]]:
    await trio.lowlevel.checkpoint()
    marks = ", ".join("?" for _ in names)
    return query(db, f"SELECT name, uuid FROM entries WHERE name IN ({marks})", *names)


# -- 5. client failover -------------------------------------------------------------------


async def test_clients_fail_over_to_the_other_registrar(tmp_path: Path) -> None:
    with two_registrars(tmp_path / "reg.db") as (a, b, proc_a, proc_b):
        with spawn(joiner_argv("svc", str(a), str(b), ttl=1.5, renew=0.3)) as svc:
            svc_uuid, _ = joiner_ready(svc)
            with trio.fail_after(15):
                async with tractor_reg.open_root_actor(
                    name="client", registry_addrs=[a, b], lease_ttl=1.5, renew_interval=0.3
                ) as me:
                    async with reader(b, "b") as via_b:

                        async def registrars() -> dict[str, str]:
                            entries = await via_b.reg("list_entries")
                            return {
                                e["name"]: e["registrar"]
                                for e in entries
                                if (e["name"], e["uuid"]) in {("svc", svc_uuid), me.uid}
                            }

                        # both registered through A (first in their lists), B sees it
                        before = await eventually(
                            "svc and client registered through A, seen by B",
                            registrars,
                            lambda regs: len(regs) == 2,
                            5,
                            proc_a,
                            proc_b,
                        )
                        assert all(r.endswith(str(a)) for r in before.values()), before

                        await trio.to_thread.run_sync(proc_a.kill_group)  # SIGKILL A

                        # lookups go on through B
                        async with tractor_reg.find_actor("svc", raise_on_none=True) as found:
                            assert isinstance(found, tractor_reg.Portal)
                            assert await found.run(whoami) == ["svc", svc_uuid]

                        # leases fail over: both re-register through B
                        await eventually(
                            "svc and client re-registered through B",
                            registrars,
                            lambda regs: (
                                len(regs) == 2 and all(r.endswith(str(b)) for r in regs.values())
                            ),
                            5,
                            proc_b,
                        )

                    # waits and new registrations go on through B
                    woken = trio.Event()
                    got: list[Any] = []

                    async def wait() -> None:
                        async with tractor_reg.wait_for_actor("late") as portal:
                            got.append(await portal.run(whoami))
                        woken.set()

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(wait)
                        with spawn(joiner_argv("late", str(a), str(b))) as late:
                            late_uuid, _ = await await_joiner(late)
                            with trio.move_on_after(5):
                                await woken.wait()
                            assert woken.is_set(), (
                                f"wait_for_actor was not woken; B stderr:\n{proc_b.stderr_tail()}"
                            )
                    assert got == [["late", late_uuid]]
