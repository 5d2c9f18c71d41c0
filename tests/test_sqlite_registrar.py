"""Registrar processes over a SQLite file: restarts, crashes, several registrars per file.

Every registrar here is a real ``python -m tractor_reg serve`` process on a real SQLite file
(``poll_interval=0.05``: another process's write is visible within about 50 ms); crashes
are SIGKILL. Lookups go through the registrars' endpoints over TCP, either from a raw
protocol client (:func:`tests.rpc_targets.hostile.client`) or from an in-test root actor.
The scenarios that hold for any shared store (SQLite or Redis) are in
:mod:`tests.test_shared_store`.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

import tractor_reg
from tests.procs import (
    Proc,
    eventually,
    integrity,
    joiner_argv,
    joiner_ready,
    new_addr,
    reader,
    registrar_argv,
    spawn,
    sqlite_url,
    view_of,
    wait_ready,
)
from tests.rpc_targets.funcs import whoami
from tests.rpc_targets.hostile import client

pytestmark = pytest.mark.sqlite

T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------


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


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the file directly (read-only, never holding a lock past the call)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def names_in(table: dict[str, Any]) -> set[str]:
    return {key.split(".", 1)[0] for key in table}


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


# -- several registrars, one file ---------------------------------------------------------


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
