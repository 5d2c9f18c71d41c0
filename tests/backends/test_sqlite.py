"""The ``sqlite://`` backend beyond the shared contract: URLs, files, durability, several
backends on one file, group commit, the change log, and bad input.

Every store is a real SQLite file under ``tmp_path``. Two :class:`SQLiteBackend` objects
on one file have separate connections and asyncio threads, so they behave like two
registrar processes. Files are inspected with the plain ``sqlite3`` module. Waits for
another backend's writes poll with a deadline; nothing sleeps to wait for a state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypedDict

import pytest
import trio
import trio.testing

from tractor_reg import (
    BackendError,
    BackendURLError,
    ChangesExpired,
    SchemaError,
    StoreBusy,
    StoreUnavailable,
    TractorRegError,
)
from tractor_reg.backends import (
    Entry,
    SQLiteBackend,
    migrate_sqlite,
    open_backend,
    opened_backend,
    parse_sqlite_url,
)
from tractor_reg.backends._sqlite import _NoLiteral, _sql_literal
from tractor_reg.backends._sqlite_schema import latest_version

from .conftest import FakeClock, churn_history

pytestmark = pytest.mark.sqlite

TTL = 600.0
LOGGER = "tractor_reg.backends.sqlite"


# -- helpers ---------------------------------------------------------------------------------


def url_of(path: Path | str, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def execute(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(path, timeout=5)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def entry_rows(path: Path) -> list[tuple[Any, ...]]:
    return sorted(query(path, "SELECT * FROM entries"), key=repr)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 2.0
) -> float:
    """Poll ``check`` until true; fail after ``timeout``. Returns the time it took."""
    start = trio.current_time()
    try:
        with trio.fail_after(timeout):
            while not await check():
                await trio.sleep(0.01)
    except trio.TooSlowError:
        pytest.fail(f"not within {timeout} s: {what}")
    return trio.current_time() - start


def addr(i: int) -> tuple[str, int]:
    return ("127.0.0.1", 10_000 + i)


async def assert_consistent(*backends: SQLiteBackend) -> list[Entry]:
    """The backends serve the same entries; every address has one owner; revisions unique."""
    first = await backends[0].entries()
    for other in backends[1:]:
        assert await other.entries() == first
        assert await other.revision() == await backends[0].revision()
    seen: dict[tuple[str, Any], tuple[str, str]] = {}
    for entry in first:
        for a in entry.addrs:
            assert a not in seen, f"{a} owned by {seen[a]} and {entry.uid}"
            seen[a] = entry.uid
    revisions = [e.revision for e in first]
    assert len(set(revisions)) == len(revisions)
    assert revisions == sorted(revisions)
    return first


# A TypedDict rather than a plain dict: it tells mypy that ``**opts`` never fills ``clock``.
class ShortLog(TypedDict):
    """Options for a change log short enough that a test can outrun it."""

    change_retention: int
    synchronous: str


@asynccontextmanager
async def sqlite_backend(
    path: Path, clock: FakeClock | None = None, **options: object
) -> AsyncIterator[SQLiteBackend]:
    """An opened backend *without* its background polling (the test polls explicitly)."""
    kwargs: dict[str, Any] = dict(options)
    if clock is not None:
        kwargs["clock"] = clock
    backend = SQLiteBackend(str(path), **kwargs)
    try:
        await backend.open()
        yield backend
    finally:
        await backend.aclose()


@asynccontextmanager
async def polled_backend(
    path: Path, clock: FakeClock | None = None, **options: object
) -> AsyncIterator[SQLiteBackend]:
    """An opened backend with its ``run()`` upkeep (as a registrar has it)."""
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    async with opened_backend(url_of(path, **options), **kwargs) as backend:
        assert isinstance(backend, SQLiteBackend)
        yield backend


# -- another process holding the lock ---------------------------------------------------------

LOCKER = r"""
import sqlite3, sys

conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
if sys.argv[2] == "exclusive-mode":
    # Keeps even WAL readers out: the connection takes the file for itself.
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
print("LOCKED", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
print("RELEASED", flush=True)
"""


class Locker:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buf = bytearray()
        self.released = False

    async def line(self, timeout: float = 10.0) -> bytes:
        assert self.proc.stdout is not None
        with trio.move_on_after(timeout):
            while b"\n" not in self.buf:
                chunk = await self.proc.stdout.receive_some(4096)
                if not chunk:
                    break
                self.buf.extend(chunk)
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf[:] = rest
        return line

    async def stderr_tail(self) -> str:
        assert self.proc.stderr is not None
        self.proc.kill()
        data = b""
        with trio.move_on_after(5):
            while chunk := await self.proc.stderr.receive_some(4096):
                data += chunk
        return data.decode(errors="replace")[-2000:]

    async def release(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(b"release\n")
        line = await self.line()
        if line != b"RELEASED":
            pytest.fail(f"the lock holder did not release: {line!r}\n{await self.stderr_tail()}")
        with trio.fail_after(10):
            assert await self.proc.wait() == 0
        self.released = True


@asynccontextmanager
async def lock_held(path: Path, mode: str = "plain") -> AsyncIterator[Locker]:
    """A real other process holding ``BEGIN EXCLUSIVE`` on ``path`` until released."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", LOCKER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    locker = Locker(proc)
    try:
        line = await locker.line()
        if line != b"LOCKED":
            pytest.fail(f"the lock holder did not lock: {line!r}\n{await locker.stderr_tail()}")
        yield locker
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
            await proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    await stream.aclose()


# -- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///relative/path.db", {"path": "relative/path.db"}),
        ("sqlite:///registry.db", {"path": "registry.db"}),
        ("sqlite:////absolute/path.db", {"path": "/absolute/path.db"}),
        ("sqlite:///a%20b.db", {"path": "a b.db"}),
        ("SQLITE:///x.db", {"path": "x.db"}),
        ("sqlite:///x.db?synchronous=normal", {"synchronous": "normal"}),
        ("sqlite:///x.db?synchronous=full", {"synchronous": "full"}),
        ("sqlite:///x.db?synchronous=NORMAL", {"synchronous": "normal"}),
        ("sqlite:///x.db?busy_timeout=0.25", {"busy_timeout": 0.25}),
        ("sqlite:///x.db?busy_timeout=10", {"busy_timeout": 10.0}),
        ("sqlite:///x.db?poll_interval=0.05", {"poll_interval": 0.05}),
        ("sqlite:///x.db?change_retention=1000", {"change_retention": 1000}),
        ("sqlite:///x.db?change_retention=250000", {"change_retention": 250_000}),
        (
            "sqlite:////var/x.db?synchronous=normal&busy_timeout=2&poll_interval=0.5"
            "&change_retention=5000",
            {
                "path": "/var/x.db",
                "synchronous": "normal",
                "busy_timeout": 2.0,
                "poll_interval": 0.5,
                "change_retention": 5000,
            },
        ),
    ],
)
def test_parse_good_urls(url: str, expected: dict[str, object]) -> None:
    defaults = {
        "path": "x.db",
        "synchronous": "full",
        "busy_timeout": 5.0,
        "poll_interval": 0.1,
        "change_retention": 100_000,
    }
    want = {**defaults, **expected}
    opts = parse_sqlite_url(url)
    assert {k: getattr(opts, k) for k in want} == want

    backend = open_backend(url)
    assert isinstance(backend, SQLiteBackend)
    assert backend.scheme == "sqlite"
    assert backend.options == opts
    assert backend.path == opts.path


def test_open_backend_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "registry.db"
    backend = open_backend(url_of(path))
    assert isinstance(backend, SQLiteBackend)
    assert not path.parent.exists()


async def test_relative_url_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with opened_backend("sqlite:///data/sub/registry.db") as backend:
        await backend.register(("alpha", "a1"), [addr(1)], TTL)
    created = tmp_path / "data" / "sub" / "registry.db"
    assert created.is_file()
    assert query(created, "SELECT name, uuid FROM entries") == [("alpha", "a1")]


async def test_absolute_url(tmp_path: Path) -> None:
    path = tmp_path / "abs" / "registry.db"
    url = f"sqlite:///{path}"
    assert url.startswith("sqlite:////")
    async with opened_backend(url) as backend:
        await backend.register(("alpha", "a1"), [addr(1)], TTL)
    assert query(path, "SELECT name FROM entries") == [("alpha",)]


BAD_URLS = [
    ("sqlite://host/x.db", "no host"),
    ("sqlite://localhost/x.db", "no host"),
    ("sqlite://user@host:5/x.db", "no host"),
    ("sqlite://", "names no database file"),
    ("sqlite:///", "names no database file"),
    ("sqlite:////", "names no database file"),
    ("sqlite:x.db", "names no database file"),
    ("sqlite:///dir/", "must name a database file"),
    ("sqlite:////abs/dir/", "must name a database file"),
    ("sqlite:///:memory:", "must name a database file"),
    ("sqlite:///x.db#frag", "fragment"),
    ("sqlite:///x.db?synchronous=normal#frag", "fragment"),
    ("sqlite:///x.db?foo=1", "unknown sqlite option 'foo'"),
    ("sqlite:///x.db?Synchronous=full", "unknown sqlite option 'Synchronous'"),
    ("sqlite:///x.db?timeout=3", "unknown sqlite option 'timeout'"),
    ("sqlite:///x.db?synchronous=normal&synchronous=full", "'synchronous' given twice"),
    ("sqlite:///x.db?busy_timeout=1&busy_timeout=1", "'busy_timeout' given twice"),
    ("sqlite:///x.db?synchronous=off", "synchronous='off'"),
    ("sqlite:///x.db?synchronous=extra", "synchronous='extra'"),
    ("sqlite:///x.db?synchronous=", "synchronous=''"),
    ("sqlite:///x.db?busy_timeout=abc", "busy_timeout='abc'"),
    ("sqlite:///x.db?busy_timeout=0", "busy_timeout='0'"),
    ("sqlite:///x.db?busy_timeout=-1", "busy_timeout='-1'"),
    ("sqlite:///x.db?busy_timeout=nan", "busy_timeout='nan'"),
    ("sqlite:///x.db?busy_timeout=inf", "busy_timeout='inf'"),
    ("sqlite:///x.db?busy_timeout=", "busy_timeout=''"),
    ("sqlite:///x.db?poll_interval=0", "poll_interval='0'"),
    ("sqlite:///x.db?poll_interval=soon", "poll_interval='soon'"),
    ("sqlite:///x.db?change_retention=999", "change_retention='999'"),
    ("sqlite:///x.db?change_retention=abc", "change_retention='abc'"),
    ("sqlite:///x.db?change_retention=1e4", "change_retention='1e4'"),
    ("sqlite:///x.db?change_retention=-5000", "change_retention='-5000'"),
    ("sqlite:///x.db?busy_timeout", "malformed"),
    ("sqlite:///x.db?&", "malformed"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_URLS)
def test_bad_urls_are_refused_naming_the_problem(
    url: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BackendURLError) as info:
        parse_sqlite_url(url)
    assert problem in str(info.value)
    assert isinstance(info.value, BackendError)
    assert isinstance(info.value, TractorRegError)
    assert isinstance(info.value, ValueError)

    with pytest.raises(BackendURLError) as info:
        open_backend(url)
    assert problem in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_the_constructor_refuses_an_unknown_sync_level() -> None:
    with pytest.raises(ValueError):
        SQLiteBackend("x.db", synchronous="off")


# -- files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
async def test_missing_directory_and_file_are_created_owner_only(
    tmp_path: Path, umask: int
) -> None:
    directory = tmp_path / "state"
    path = directory / "registry.db"
    old = os.umask(umask)
    try:
        async with polled_backend(path) as backend:
            assert mode_of(directory) == 0o700
            assert mode_of(path) == 0o600
            await backend.register(("alpha", "a1"), [addr(1)], TTL)
            await backend.register(("beta", "b1"), [addr(2)], TTL)
            wal = Path(f"{path}-wal")
            shm = Path(f"{path}-shm")
            assert wal.exists() and shm.exists()
            assert mode_of(wal) == 0o600
            assert mode_of(shm) == 0o600
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600
    assert mode_of(directory) == 0o700


async def test_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)
    path = directory / "registry.db"
    async with polled_backend(path) as backend:
        await backend.register(("alpha", "a1"), [addr(1)], TTL)
    assert mode_of(directory) == 0o755
    assert mode_of(path) == 0o600


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    async with polled_backend(path) as backend:
        await backend.register(("alpha", "a1"), [addr(1)], TTL)
        assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("level", ["normal", "full"])
async def test_sync_level_is_applied_and_data_survives_reopen(tmp_path: Path, level: str) -> None:
    path = tmp_path / "registry.db"
    async with polled_backend(path, synchronous=level) as backend:
        assert isinstance(backend, SQLiteBackend)
        assert backend.options.synchronous == level
        assert level in repr(backend)
        written = await backend.register(("alpha", "a1"), [addr(1)], TTL)
    async with polled_backend(path, synchronous=level) as backend:
        assert await backend.lookup("alpha") == written


# -- durability and restart ---------------------------------------------------------------------


async def test_writes_are_in_the_file_and_the_view_when_the_call_returns(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as backend:
        entry = await backend.register(("alpha", "a1"), [addr(1)], TTL, registrar="reg-A")
        # The view, at once (no poll).
        assert await backend.lookup("alpha") == entry
        assert await backend.revision() == entry.revision
        # The file, from another connection, while the backend is still open.
        rows = query(path, "SELECT name, uuid, revision, registrar FROM entries")
        assert rows == [("alpha", "a1", entry.revision, "reg-A")]
        assert query(path, "SELECT value FROM meta WHERE key = 'revision'") == [(entry.revision,)]

        assert await backend.unregister(("alpha", "a1")) == entry
        assert await backend.lookup("alpha") is None
        assert query(path, "SELECT count(*) FROM entries") == [(0,)]


async def test_restart_keeps_entries_revisions_order_leases_and_registrar(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "registry.db"
    uds = ("/run/tractor", "alpha-2.sock")
    async with sqlite_backend(path, clock) as backend:
        await backend.register(("alpha", "a1"), [addr(1)], TTL, registrar="reg-A")
        await backend.register(("alpha", "a2"), [uds, addr(2)], TTL, registrar="reg-B")
        await backend.register(("beta", "b1"), [addr(3), addr(4)], TTL)
        await backend.register(("gamma", "g1"), [addr(5)], 5.0)  # short lease
        await backend.register(("delta", "d1"), [addr(6)], TTL)
        clock.advance(1.0)
        # a1 registers again: now the most recent alpha, and it keeps its registered_at.
        await backend.register(("alpha", "a1"), [addr(7)], TTL, registrar="reg-A")
        renewed = await backend.renew(("alpha", "a2"), 2 * TTL)
        assert renewed is not None and renewed.expires_at == clock.now + 2 * TTL
        await backend.delete_addr(addr(3))
        await backend.unregister(("delta", "d1"))
        # An address moving to another uid.
        await backend.register(("epsilon", "e1"), [addr(4)], TTL)

        entries = await backend.entries()
        revision = await backend.revision()
        alpha_all = await backend.lookup_all("alpha")
        beta = await backend.get(("beta", "b1"))
    assert [e.uid for e in alpha_all] == [("alpha", "a1"), ("alpha", "a2")]
    assert beta is None  # b1 lost one address to delete_addr, the other to e1

    async with sqlite_backend(path, clock) as backend:
        assert await backend.entries() == entries
        assert await backend.revision() == revision
        assert await backend.lookup_all("alpha") == alpha_all
        alpha = await backend.lookup("alpha")
        assert alpha is not None and alpha.uid == ("alpha", "a1")
        assert alpha.addrs == (addr(1), addr(7))
        assert alpha.registrar == "reg-A"
        a2 = await backend.get(("alpha", "a2"))
        assert a2 is not None and a2.addrs == (uds, addr(2)) and a2.registrar == "reg-B"
        assert a2.expires_at == renewed.expires_at
        epsilon = await backend.owner_of(addr(4))
        assert epsilon is not None and epsilon.uid == ("epsilon", "e1")
        assert await backend.get(("delta", "d1")) is None
        assert await backend.get(("beta", "b1")) is None
        gamma = await backend.lookup("gamma")
        assert gamma is not None and gamma.expires_at == clock.now - 1.0 + 5.0
        # New writes continue after the stored revision.
        new = await backend.register(("zeta", "z1"), [addr(8)], TTL)
        assert new.revision == revision + 1


async def test_leases_that_ended_while_down_stay_invisible_after_reopen(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as backend:
        live = await backend.register(("alpha", "a1"), [addr(1)], TTL)
        await backend.register(("alpha", "a2"), [addr(2)], 5.0)  # newer, short lease
        await backend.register(("beta", "b1"), [addr(3)], 5.0)
    clock.advance(10.0)  # the short leases end while no registrar runs
    async with sqlite_backend(path, clock) as backend:
        assert await backend.entries() == [live]
        assert await backend.lookup("alpha") == live  # the newer a2 is expired
        assert await backend.lookup("beta") is None
        assert await backend.owner_of(addr(2)) is None
        assert await backend.count() == 1
        # Still stored until purged; renew cannot revive them.
        assert len(entry_rows(path)) == 3
        assert await backend.renew(("beta", "b1"), TTL) is None
        purged = await backend.purge_expired()
        assert [e.uid for e in purged] == [("alpha", "a2"), ("beta", "b1")]
    assert [r[:2] for r in entry_rows(path)] == [("alpha", "a1")]
    async with sqlite_backend(path, clock) as backend:
        assert await backend.entries() == [live]


# -- two backends on one file ----------------------------------------------------------------------


async def test_a_write_through_a_is_seen_by_b_after_poll(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as a, sqlite_backend(path, clock) as b:
        entry = await a.register(("alpha", "a1"), [addr(1)], TTL, registrar="reg-A")
        assert await b.lookup("alpha") is None  # b has not looked yet
        await b.poll()
        assert await b.lookup("alpha") == entry
        assert await b.owner_of(addr(1)) == entry
        assert await b.revision() == await a.revision()

        await a.unregister(("alpha", "a1"))
        await b.poll()
        assert await b.lookup("alpha") is None
        await assert_consistent(a, b)


async def test_b_sees_a_within_the_poll_interval(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    async with polled_backend(path, poll_interval=0.05) as a:
        async with polled_backend(path, poll_interval=0.05) as b:
            entry = await a.register(("alpha", "a1"), [addr(1)], TTL)

            async def b_has_it() -> bool:
                return await b.lookup("alpha") == entry

            took = await eventually(b_has_it, "b serves a's registration", timeout=2.0)
            assert took < 1.0, f"took {took:.2f} s with poll_interval=0.05"

            await a.unregister(("alpha", "a1"))

            async def b_lost_it() -> bool:
                return await b.lookup("alpha") is None

            await eventually(b_lost_it, "b drops a's unregistration", timeout=2.0)


async def test_wait_changed_on_b_is_woken_by_a_write_through_a(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    async with polled_backend(path, poll_interval=0.05) as a:
        async with polled_backend(path, poll_interval=0.05) as b:
            before = await b.revision()
            woke: list[int] = []

            async def waiter() -> None:
                woke.append(await b.wait_changed(before))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert woke == []
                entry = await a.register(("alpha", "a1"), [addr(1)], TTL)
                with trio.fail_after(2):
                    while not woke:
                        await trio.sleep(0.01)
            assert woke[0] >= entry.revision
            assert await b.lookup("alpha") == entry


async def test_latest_registered_is_decided_by_the_store_revision(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as a, sqlite_backend(path, clock) as b:
        x1 = await a.register(("x", "x1"), [addr(1)], TTL)
        # b has not polled, but plans its write on an exact view (it catches up first).
        x2 = await b.register(("x", "x2"), [addr(2)], TTL)
        assert x2.revision > x1.revision
        await a.poll()
        for backend in (a, b):
            assert await backend.lookup("x") == x2
            assert [e.uid for e in await backend.lookup_all("x")] == [("x", "x2"), ("x", "x1")]
        # x1 registers again, through a: now it is the latest, for both.
        x1_again = await a.register(("x", "x1"), [addr(1)], TTL)
        await b.poll()
        for backend in (a, b):
            assert await backend.lookup("x") == x1_again
        # b takes an address a's view still gives to x1: a sees the eviction after polling.
        taken = await b.register(("y", "y1"), [addr(1)], TTL)
        await a.poll()
        assert await a.owner_of(addr(1)) == taken
        assert await a.get(("x", "x1")) is None  # x1 had only that address
        await assert_consistent(a, b)


AWKWARD = [
    "it's",
    "'); DROP TABLE entries; --",
    "nul\x00inside",
    "snow \u2603 \U0001f600",
    'back\\slash "quoted"',
]


async def test_awkward_names_survive_the_write_and_a_reopen(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Writes travel as one SQL script: no text can escape its literal or be altered."""
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as backend:
        written = [
            await backend.register(
                (name, f"{name}-uuid"), [(f"/tmp/{name}", f"{i}.sock")], TTL, registrar=name
            )
            for i, name in enumerate(AWKWARD)
        ]
        written.append(await backend.register(("plain", "p1"), [addr(1)], TTL))
        await backend.unregister((AWKWARD[0], f"{AWKWARD[0]}-uuid"))
        expected = written[1:]
        assert await backend.entries() == expected
    async with sqlite_backend(path, clock) as backend:
        assert await backend.entries() == expected
        for entry in expected:
            assert await backend.lookup(entry.name) == entry
    assert sorted(r[0] for r in query(path, "SELECT name FROM entries")) == sorted(
        e.name for e in expected
    )


async def test_times_are_stored_exactly(tmp_path: Path) -> None:
    """Floats cross the one-script path as exact fractions: SQLite's decimal parser is
    not correctly rounded, and this time, written as repr() text, reads back 1 ulp off."""
    path = tmp_path / "registry.db"
    awkward = 1796025865.473894
    clock = FakeClock(awkward)
    async with sqlite_backend(path, clock) as a, sqlite_backend(path, clock) as b:
        written = [await a.register(("t", "t1"), [addr(1)], TTL)]
        for i, ttl in enumerate([0.1, 1 / 3, 1e-3, 86_400.123456789, 7.0]):
            written.append(await a.register(("t", f"t{i + 2}"), [addr(i + 2)], ttl))
        assert written[0].registered_at == awkward
        assert await a.entries() == written
        await b.poll()
        assert await b.entries() == written
    async with sqlite_backend(path, clock) as c:
        assert await c.entries() == written
    stored = {r[0]: r[1] for r in query(path, "SELECT uuid, registered_at FROM entries")}
    assert stored["t1"] == awkward


def test_sql_literals_read_back_exactly() -> None:
    """Every literal the one-script path writes reads back from SQLite as the same value."""
    conn = sqlite3.connect(":memory:")
    rng = random.Random(20261127)
    floats = [rng.uniform(1.7e9, 1.8e9) for _ in range(3000)]
    floats += [rng.uniform(-1e6, 1e6) for _ in range(1000)]
    floats += [0.0, 1.0, 0.1, 1e16, 2.0**62, 2.0**-60, 1e300, 5e-324, 2.0**63 - 1024]
    try:
        for value in floats:
            try:
                literal = _sql_literal(value, "utf-8")
            except _NoLiteral:
                continue  # such values take the parameter path
            (back,) = conn.execute(f"SELECT {literal}").fetchone()
            assert back == value and type(back) is float, (value, literal, back)
        for text in [*AWKWARD, "", "x" * 1000]:
            (back,) = conn.execute(f"SELECT {_sql_literal(text, 'utf-8')}").fetchone()
            assert back == text
        for number in [0, -1, 2**63 - 1, -(2**63)]:
            (back,) = conn.execute(f"SELECT {_sql_literal(number, 'utf-8')}").fetchone()
            assert back == number
    finally:
        conn.close()
    for bad in [True, float("nan"), float("inf"), -0.0, "\ud800", object()]:
        with pytest.raises(_NoLiteral):
            _sql_literal(bad, "utf-8")


class BrokenClock(FakeClock):
    """A clock that fails (a bug in a user's clock, say) while ``broken`` is set."""

    broken = False

    def __call__(self) -> float:
        if self.broken:
            raise RuntimeError("clock is broken")
        return self.now


async def test_an_unexpected_failure_fails_every_write_of_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the task that led the batch hears of it: no writer may take silence for
    success."""
    path = tmp_path / "registry.db"
    clock = BrokenClock()
    monkeypatch.setattr(logging.getLogger("tractor_reg"), "propagate", True)
    async with sqlite_backend(path, clock) as backend:
        kept = await backend.register(("kept", "k"), [addr(99)], TTL)
        clock.broken = True
        outcomes: list[object] = []

        async def one(i: int) -> None:
            try:
                outcomes.append(await backend.register(("svc", f"u{i}"), [addr(i)], TTL))
            except BackendError as exc:
                outcomes.append(exc)

        with caplog.at_level(logging.ERROR), trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(one, i)
        assert len(outcomes) == 6
        assert all(isinstance(o, BackendError) for o in outcomes), outcomes
        assert "committing a batch failed" in caplog.text
        clock.broken = False
        assert await backend.entries() == [kept]  # nothing half-written
        again = await backend.register(("svc", "u0"), [addr(0)], TTL)
        assert await backend.entries() == [kept, again]


async def test_a_utf16_database_stores_text_correctly(tmp_path: Path, clock: FakeClock) -> None:
    """A file someone created empty with a UTF-16 text encoding keeps it: text written by
    the one-script path is encoded to match, and reads back as written."""
    path = tmp_path / "registry.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA encoding = 'UTF-16le'")
    conn.execute("CREATE TABLE x (a)")
    conn.execute("DROP TABLE x")
    conn.commit()
    conn.close()
    async with sqlite_backend(path, clock) as backend:
        written = [
            await backend.register((name, "u"), [("/tmp", f"{i}.sock")], TTL, registrar=name)
            for i, name in enumerate(AWKWARD)
        ]
        stored_seq = query(path, "SELECT MAX(seq) FROM changes")[0][0]
        assert stored_seq == len(written)
    assert query(path, "PRAGMA encoding")[0][0] == "UTF-16le"
    assert sorted(r[0] for r in query(path, "SELECT name FROM entries")) == sorted(AWKWARD)
    async with sqlite_backend(path, clock) as backend:
        assert await backend.entries() == written


async def test_concurrent_writes_from_two_backends_end_consistent(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    pool = 50  # far fewer addresses than writers: evictions across backends
    async with (
        sqlite_backend(path, synchronous="normal") as a,
        sqlite_backend(path, synchronous="normal") as b,
    ):
        returned: list[Entry] = []

        async def write(backend: SQLiteBackend, tag: str, i: int) -> None:
            uid = ("svc", f"{tag}{i % 120}")
            returned.append(await backend.register(uid, [addr(i % pool)], TTL))
            if i % 7 == 0:
                await backend.unregister(("svc", f"{tag}{(i + 3) % 120}"))
            if i % 11 == 0:
                await backend.delete_addr(addr((i + 5) % pool))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(write, a, "a", i)
                    nursery.start_soon(write, b, "b", i)
        await a.poll()
        await b.poll()
        final = await assert_consistent(a, b)
        assert final, "some registrations must survive"
        # Every registration got its own store revision.
        revisions = [e.revision for e in returned]
        assert len(set(revisions)) == len(revisions) == 400
        # The file agrees with both views.
        async with sqlite_backend(path) as c:
            assert await c.entries() == final
            assert await c.revision() == await a.revision()
    owners: dict[Any, Any] = {}
    for row in query(path, "SELECT name, uuid, addrs FROM entries"):
        for item in json.loads(row[2]):
            key = tuple(item)
            assert key not in owners, f"{key} stored for {owners[key]} and {row[:2]}"
            owners[key] = row[:2]


async def test_purging_from_two_backends_at_once_is_safe(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as a, sqlite_backend(path, clock) as b:
        short = [("short", f"s{i}") for i in range(60)]
        long = [("long", f"l{i}") for i in range(40)]
        for i, uid in enumerate(short):
            await a.register(uid, [addr(i)], 10.0)
        for i, uid in enumerate(long):
            await b.register(uid, [addr(100 + i)], TTL)
        await a.poll()
        await b.poll()
        clock.advance(20.0)
        purged: dict[str, list[Entry]] = {}

        async def purge(name: str, backend: SQLiteBackend) -> None:
            purged[name] = await backend.purge_expired()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(purge, "a", a)
                nursery.start_soon(purge, "b", b)
        by_a = {e.uid for e in purged["a"]}
        by_b = {e.uid for e in purged["b"]}
        assert by_a.isdisjoint(by_b), "an entry was purged twice"
        assert by_a | by_b == set(short)
        await a.poll()
        await b.poll()
        final = await assert_consistent(a, b)
        assert {e.uid for e in final} == set(long)
        assert await a.purge_expired() == []
        assert await b.purge_expired() == []
    assert sorted(r[:2] for r in entry_rows(path)) == sorted(long)


# -- group commit -----------------------------------------------------------------------------


async def test_group_commit_of_500_concurrent_registrations(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    results: dict[int, Entry] = {}
    async with sqlite_backend(path) as backend:  # default sync level: full

        async def one(i: int) -> None:
            results[i] = await backend.register(("storm", f"u{i}"), [addr(i)], TTL)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(500):
                    nursery.start_soon(one, i)
        assert len(results) == 500
        assert sorted(e.revision for e in results.values()) == list(range(1, 501))
        assert await backend.count() == 500
        served = await backend.entries()
    async with sqlite_backend(path) as backend:
        assert await backend.entries() == served
        for i in (0, 250, 499):
            assert await backend.get(("storm", f"u{i}")) == results[i]
    # Coalesced: every change row records the store revision of its commit, so the number
    # of distinct values is the number of transactions.
    commits = query(path, "SELECT count(DISTINCT store_revision) FROM changes")[0][0]
    assert 1 <= commits < 50, f"500 concurrent registrations took {commits} commits"


# -- the change log: history across a restart --------------------------------------------------


async def _churn(backend: SQLiteBackend) -> None:
    """Every kind of change, expiry included (once the clock passes 0.5 s)."""
    await churn_history(backend, addr)
    await backend.register(("short", "s"), [addr(4)], 0.5)


async def test_a_reopened_store_keeps_the_change_history(tmp_path: Path, clock: FakeClock) -> None:
    """Watchers resume across a restart: the reopened view serves the same changes
    (kinds, revisions, addresses) the live one did, from revision 0."""
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as backend:
        await _churn(backend)
        clock.advance(1.0)
        assert [e.uid for e in await backend.purge_expired()] == [("short", "s")]
        live = await backend.changes_since(0)
        revision = await backend.revision()
    assert {c.kind for c in live} == {"registered", "updated", "unregistered", "expired"}
    async with sqlite_backend(path, clock) as backend:
        assert await backend.changes_since(0) == live
        middle = live[len(live) // 2].revision
        assert await backend.changes_since(middle) == [c for c in live if c.revision > middle]
        assert await backend.changes_since(revision) == []
        # ... and goes on recording after the reload.
        entry = await backend.register(("later", "l"), [addr(9)], TTL)
        assert (await backend.changes_since(revision))[-1].revision == entry.revision


async def test_history_after_pruning_starts_where_the_log_does(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    opts: ShortLog = {"change_retention": 1000, "synchronous": "normal"}
    async with sqlite_backend(path, **opts) as a:
        await _outrun(a, path)
        live = await a.changes_since(await a.revision() - 50)
        revision = await a.revision()
    async with sqlite_backend(path, **opts) as b:
        with pytest.raises(ChangesExpired):
            await b.changes_since(0)
        assert await b.changes_since(revision - 50) == live
        assert await b.revision() == revision


async def test_an_unreadable_change_row_restarts_the_history_after_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as backend:
        await _churn(backend)
        live = await backend.changes_since(0)
    broken = live[3].revision
    execute(path, "UPDATE changes SET addrs = 'garbage' WHERE store_revision = ?", (broken,))
    async with sqlite_backend(path, clock) as backend:
        with pytest.raises(ChangesExpired):
            await backend.changes_since(broken - 1)
        assert await backend.changes_since(broken) == [c for c in live if c.revision > broken]
        # The table itself is untouched by a bad history row.
        assert await backend.count() == 2


# -- the change log: falling behind ------------------------------------------------------------


async def _outrun(a: SQLiteBackend, path: Path) -> None:
    """Write through ``a`` until it pruned change-log rows another backend has not seen.

    Pruning happens every 256 commits once the log holds more than change_retention
    (1000) rows: one coalesced batch of 1100 registrations, then 300 single commits that
    delete, re-register and add rows.
    """
    async with trio.open_nursery() as nursery:
        for i in range(1100):
            nursery.start_soon(a.register, ("bulk", f"u{i}"), [addr(i)], TTL)
    for i in range(300):
        if i % 3 == 0:
            await a.unregister(("bulk", f"u{i}"))
        elif i % 3 == 1:
            await a.register(("bulk", f"u{i}"), [addr(2000 + i)], TTL)
        else:
            await a.register(("late", f"l{i}"), [addr(3000 + i)], TTL)
    first = query(path, "SELECT MIN(seq) FROM changes")[0][0]
    assert first > 10, "the writer should have pruned the change log"


async def test_a_backend_that_fell_behind_the_pruned_log_reloads(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    opts: ShortLog = {"change_retention": 1000, "synchronous": "normal"}
    async with sqlite_backend(path, **opts) as a:
        await a.register(("first", "f1"), [addr(9999)], TTL)
        async with sqlite_backend(path, **opts) as b:
            assert await b.count() == 1
            await _outrun(a, path)
            await b.poll()
            final = await assert_consistent(a, b)
            assert len(final) == 1 + 1100 - 100 + 100
            # b keeps following normally afterwards.
            entry = await a.register(("after", "x1"), [addr(5000)], TTL)
            await b.poll()
            assert await b.lookup("after") == entry


async def test_readers_never_see_a_half_reloaded_view(tmp_path: Path) -> None:
    """A reload reads the whole table before it swaps it in: lookups during it see the
    old view or the new one, and history stays available."""
    path = tmp_path / "registry.db"
    opts: ShortLog = {"change_retention": 1000, "synchronous": "normal"}
    async with sqlite_backend(path, **opts) as a:
        first = await a.register(("first", "f1"), [addr(9999)], TTL)
        async with sqlite_backend(path, **opts) as b:
            before = await b.count()
            revision = await b.revision()
            await _outrun(a, path)
            after = await a.count()
            seen: set[int] = set()
            wrong: list[object] = []
            reads = 0
            done = trio.Event()

            async def read() -> None:
                nonlocal reads
                while not done.is_set():
                    reads += 1
                    seen.add(await b.count())
                    if await b.lookup("first") != first:
                        wrong.append("lookup")
                    try:
                        await b.changes_since(revision)
                    except ChangesExpired:
                        pass  # allowed: the new history may start later
                    # Pace the reads: a loop that never blocks holds the GIL, and
                    # aiosqlite's thread then gets it only once per switch interval (5 ms)
                    # for each row it fetches - the reload would take seconds. A real
                    # registrar blocks on its sockets between requests.
                    await trio.sleep(0.0002)

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read)
                    await b.poll()  # falls behind the pruned log: a full reload
                    done.set()
            assert reads > 3, "the reads should interleave with the reload's awaits"
            assert seen <= {before, after}, sorted(seen)
            assert not wrong
            assert await b.count() == after


async def test_a_cancelled_reload_leaves_no_read_transaction_open(tmp_path: Path) -> None:
    """poll() cancelled in the middle of a full reload must end its read snapshot: one
    left open would freeze what this backend sees of the file."""
    path = tmp_path / "registry.db"
    opts: ShortLog = {"change_retention": 1000, "synchronous": "normal"}
    async with sqlite_backend(path, **opts) as a, sqlite_backend(path, **opts) as b:
        with trio.fail_after(120):
            for i in range(24):
                # Put b behind the pruned log: one big batch, then commits up to a prune.
                async with trio.open_nursery() as nursery:
                    for j in range(1100):
                        uid = ("spin", f"s{j}")
                        nursery.start_soon(a.register, uid, [addr(6000 + j)], TTL)
                for j in range(256):
                    await a.register(("tick", "t"), [addr(9000 + j % 2)], TTL)
                with trio.move_on_after((i % 12) * 0.0006):
                    await b.poll()
                probe = await a.register(("probe", f"p{i}"), [addr(8000 + i)], TTL)
                await b.poll()
                assert await b.get(("probe", f"p{i}")) == probe, f"iteration {i}"
        await assert_consistent(a, b)


async def test_a_backend_opened_on_an_empty_log_that_fell_behind_reloads(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    opts: ShortLog = {"change_retention": 1000, "synchronous": "normal"}
    async with sqlite_backend(path, **opts) as a, sqlite_backend(path, **opts) as b:
        await _outrun(a, path)
        await b.poll()
        await assert_consistent(a, b)


async def test_a_backend_that_fell_behind_can_still_write(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    opts: ShortLog = {"change_retention": 1000, "synchronous": "normal"}
    async with sqlite_backend(path, **opts) as a:
        await a.register(("first", "f1"), [addr(9999)], TTL)
        async with sqlite_backend(path, **opts) as b:
            await _outrun(a, path)
            entry = await b.register(("from-b", "b1"), [addr(7777)], TTL)
            assert await b.lookup("from-b") == entry
            await a.poll()
            await assert_consistent(a, b)


# -- bad input: paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("below", ["registry.db", "sub/registry.db"])
async def test_a_path_under_a_regular_file_is_unavailable(tmp_path: Path, below: str) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory\n")
    backend = open_backend(url_of(blocker / below))
    with pytest.raises(StoreUnavailable, match="plain-file"):
        await backend.open()
    await backend.aclose()
    assert blocker.read_text() == "not a directory\n"


async def test_a_path_that_cannot_be_created_is_unavailable() -> None:
    backend = SQLiteBackend("/proc/tractor-reg-test/registry.db")
    with pytest.raises(StoreUnavailable):
        await backend.open()
    await backend.aclose()


async def test_a_directory_as_the_database_path_is_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    backend = open_backend(url_of(directory))
    with pytest.raises(StoreUnavailable):
        await backend.open()
    await backend.aclose()
    assert list(directory.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_an_unwritable_directory_is_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        backend = open_backend(url_of(directory / "registry.db"))
        with pytest.raises(StoreUnavailable):
            await backend.open()
        await backend.aclose()
        assert list(directory.iterdir()) == []
    finally:
        directory.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_a_read_only_database_is_unavailable_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path) as backend:
        await backend.register(("alpha", "a1"), [addr(1)], TTL)
    rows = entry_rows(path)
    path.chmod(0o400)
    try:
        backend = SQLiteBackend(str(path))
        with pytest.raises(StoreUnavailable):
            await backend.open()
        await backend.aclose()
    finally:
        path.chmod(0o600)
    assert entry_rows(path) == rows


# -- bad input: files that are not ours -------------------------------------------------------


def _random_bytes(path: Path) -> None:
    data = random.Random(1234).randbytes(16384)
    assert not data.startswith(b"SQLite format 3")
    path.write_bytes(data)


def _text(path: Path) -> None:
    path.write_text("name,uuid\nalpha,a1\n" * 50)


@pytest.mark.parametrize("make", [_random_bytes, _text], ids=["random-bytes", "text"])
async def test_a_file_that_is_not_a_database_is_refused_untouched(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    path = tmp_path / "registry.db"
    make(path)
    before = digest(path)
    backend = open_backend(url_of(path))
    with pytest.raises(SchemaError, match="not a usable SQLite database"):
        await backend.open()
    await backend.aclose()
    assert digest(path) == before
    with pytest.raises(SchemaError):
        await migrate_sqlite(str(path))
    assert digest(path) == before


FOREIGN_DATABASES: dict[str, list[str]] = {
    "foreign": [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
        "INSERT INTO users (name) VALUES ('ada'), ('grace')",
    ],
    "foreign-wal": [
        "PRAGMA journal_mode = WAL",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)",
        "INSERT INTO orders (total) VALUES (1.5)",
    ],
    # another application that also uses user_version
    "foreign-versioned": ["CREATE TABLE settings (k TEXT, v TEXT)", "PRAGMA user_version = 1"],
    # another application's table that happens to be called ``entries``
    "foreign-entries-table": [
        "CREATE TABLE entries (id INTEGER PRIMARY KEY, body TEXT)",
        "INSERT INTO entries (body) VALUES ('dear diary')",
    ],
}


@pytest.mark.parametrize("statements", FOREIGN_DATABASES.values(), ids=FOREIGN_DATABASES.keys())
async def test_another_applications_database_is_refused_untouched(
    tmp_path: Path, statements: list[str]
) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    before = digest(path)
    version = query(path, "PRAGMA user_version")
    backend = open_backend(url_of(path))
    with pytest.raises(SchemaError, match="another application"):
        await backend.open()
    await backend.aclose()
    assert digest(path) == before
    with pytest.raises(SchemaError, match="another application"):
        await migrate_sqlite(str(path))
    assert digest(path) == before
    assert query(path, "PRAGMA user_version") == version


async def test_a_newer_registry_is_refused_and_its_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path) as backend:
        await backend.register(("alpha", "a1"), [addr(1)], TTL)
    execute(path, f"PRAGMA user_version = {latest_version() + 1}")
    before = digest(path)
    rows = entry_rows(path)
    backend = SQLiteBackend(str(path))
    with pytest.raises(SchemaError, match="newer"):
        await backend.open()
    await backend.aclose()
    assert digest(path) == before
    assert entry_rows(path) == rows


# -- bad input: a lock held by another process ---------------------------------------------------


@pytest.mark.parametrize("populated", [False, True], ids=["new-file", "populated-wal"])
async def test_a_file_locked_past_the_busy_timeout_at_open(
    tmp_path: Path, clock: FakeClock, populated: bool
) -> None:
    path = tmp_path / "registry.db"
    rows: list[tuple[Any, ...]] = []
    if populated:
        async with sqlite_backend(path, clock) as backend:
            await backend.register(("alpha", "a1"), [addr(1)], TTL)
        rows = entry_rows(path)
    # On a WAL file a plain exclusive transaction does not keep readers out; exclusive
    # locking mode does.
    async with lock_held(path, "exclusive-mode" if populated else "plain") as locker:
        backend = SQLiteBackend(str(path), busy_timeout=0.2, clock=clock)
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="busy timeout"):
            await backend.open()
        waited = time.monotonic() - started
        await backend.aclose()
        assert 0.15 <= waited < 3.0, f"waited {waited:.2f} s for a 0.2 s busy timeout"
        await locker.release()
    async with sqlite_backend(path, clock, busy_timeout=0.2) as backend:
        assert [e.uid for e in await backend.entries()] == [tuple(r[:2]) for r in rows]
    if populated:
        assert entry_rows(path) == rows


async def test_a_write_blocked_past_the_busy_timeout(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock, busy_timeout=0.2) as backend:
        first = await backend.register(("alpha", "a1"), [addr(1)], TTL)
        async with lock_held(path) as locker:
            started = time.monotonic()
            with pytest.raises(StoreBusy):
                await backend.register(("beta", "b1"), [addr(2)], TTL)
            with pytest.raises(StoreBusy):
                await backend.unregister(("alpha", "a1"))
            assert time.monotonic() - started < 5.0
            # Nothing changed, in the view or in the file; reads still work.
            assert await backend.entries() == [first]
            assert await backend.lookup("beta") is None
            await locker.release()
        # Usable again once the lock is gone, with nothing lost.
        second = await backend.register(("beta", "b1"), [addr(2)], TTL)
        assert await backend.entries() == [first, second]
    async with sqlite_backend(path, clock) as backend:
        assert await backend.entries() == [first, second]


async def test_concurrent_writers_all_get_store_busy(tmp_path: Path, clock: FakeClock) -> None:
    """Every caller in a batch that could not commit gets the error (none hangs)."""
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock, busy_timeout=0.2) as backend:
        async with lock_held(path) as locker:
            errors: list[BaseException] = []

            async def one(i: int) -> None:
                try:
                    await backend.register(("storm", f"u{i}"), [addr(i)], TTL)
                except StoreBusy as exc:
                    errors.append(exc)

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for i in range(20):
                        nursery.start_soon(one, i)
            assert len(errors) == 20
            await locker.release()
        assert await backend.entries() == []
        await backend.register(("storm", "u0"), [addr(0)], TTL)
        assert await backend.count() == 1


# -- cold start: a store bigger than one page of the snapshot ----------------------------------


async def test_a_store_of_many_pages_reloads_whole_and_in_order(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Reopening reads the table page by page: every entry comes back, and per name the
    newest registration still wins even when its older sibling sits pages earlier."""
    path = tmp_path / "registry.db"
    total = 10_000
    async with sqlite_backend(path, clock) as backend:
        first = await backend.register(("twice", "old"), [addr(0)], TTL)

        async def fill(start: int) -> None:
            for i in range(start, min(total, start + 500)):
                await backend.register((f"n{i}", f"u{i}"), [("127.0.0.2", 1024 + i)], TTL)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for start in range(0, total, 500):
                    nursery.start_soon(fill, start)
        newest = await backend.register(("twice", "new"), [addr(1)], TTL)
        expected = await backend.entries()
        revision = await backend.revision()
    async with sqlite_backend(path, clock) as backend:
        assert backend.skipped_rows == 0
        assert await backend.count() == total + 2
        assert await backend.entries() == expected
        assert await backend.revision() == revision
        assert await backend.lookup("twice") == newest
        assert await backend.lookup_all("twice") == [newest, first]
        assert await backend.owner_of(("127.0.0.2", 1024 + 4321)) is not None


# -- bad input: rows edited by hand -------------------------------------------------------------


GARBAGE = [
    ("addrs", "not json"),
    ("addrs", "[]"),
    ("addrs", '{"host": 1}'),
    ("addrs", '[["127.0.0.1"]]'),
    ("addrs", '[["127.0.0.1", true]]'),
    ("addrs", "[[5, 5]]"),
    ("addrs", '[["127.0.0.1", 70000]]'),
    ("addrs", '[["127.0.0.1", -1]]'),
    ("addrs", '[["/tmp", "a/b.sock"]]'),
    ("addrs", '[["/tmp", ""]]'),
    ("expires_at", "1e999"),
    ("expires_at", "soon"),
    ("registered_at", "yesterday"),
    ("revision", "seven"),
    ("name", ""),
]


@pytest.mark.parametrize(("column", "value"), GARBAGE, ids=[f"{c}={v}" for c, v in GARBAGE])
async def test_a_row_edited_into_garbage_is_skipped_and_the_rest_served(
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    column: str,
    value: str,
) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as backend:
        good = [
            await backend.register(("alpha", "a1"), [addr(1)], TTL),
            await backend.register(("beta", "b1"), [addr(2)], TTL),
        ]
        await backend.register(("broken", "x1"), [addr(3)], TTL)
        good.append(await backend.register(("gamma", "g1"), [addr(4)], TTL))
    execute(path, f"UPDATE entries SET {column} = ? WHERE uuid = 'x1'", (value,))
    rows = entry_rows(path)

    # The package logger may have been set not to propagate by an earlier test.
    monkeypatch.setattr(logging.getLogger("tractor_reg"), "propagate", True)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        async with sqlite_backend(path, clock) as backend:
            assert backend.skipped_rows == 1
            assert await backend.entries() == good
            assert await backend.lookup("alpha") == good[0]
            assert await backend.owner_of(addr(4)) == good[2]
            # Writes still work, around the broken row.
            later = await backend.register(("delta", "d1"), [addr(5)], TTL)
            assert await backend.lookup("delta") == later
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == LOGGER]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "x1" in message and "skipping invalid row" in message
    # Nothing stored was lost: the broken row is still in the file, for a human to fix.
    after = entry_rows(path)
    assert [r for r in rows if r in after] == rows


@pytest.mark.parametrize("value", ['[["127.0.0.1", 70000]]', '[["/run", ""]]'])
async def test_a_row_with_an_impossible_address_is_skipped(
    tmp_path: Path, clock: FakeClock, value: str
) -> None:
    path = tmp_path / "registry.db"
    async with sqlite_backend(path, clock) as backend:
        good = await backend.register(("alpha", "a1"), [addr(1)], TTL)
        await backend.register(("broken", "x1"), [addr(3)], TTL)
    execute(path, "UPDATE entries SET addrs = ? WHERE uuid = 'x1'", (value,))
    async with sqlite_backend(path, clock) as backend:
        assert await backend.entries() == [good]
        assert backend.skipped_rows == 1


async def test_a_change_edited_into_garbage_is_skipped_by_a_follower(
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "registry.db"
    monkeypatch.setattr(logging.getLogger("tractor_reg"), "propagate", True)
    async with sqlite_backend(path, clock) as a, sqlite_backend(path, clock) as b:
        first = await a.register(("alpha", "a1"), [addr(1)], TTL)
        await a.register(("broken", "x1"), [addr(2)], TTL)
        execute(path, "UPDATE changes SET addrs = 'garbage' WHERE uuid = 'x1'")
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            await b.poll()
        assert b.skipped_rows == 1
        assert await b.lookup("alpha") == first
        assert await b.lookup("broken") is None
        assert any("skipping invalid change" in r.getMessage() for r in caplog.records)
