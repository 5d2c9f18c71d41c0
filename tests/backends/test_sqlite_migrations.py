"""SQLite schema migrations: shipping, numbering, applying, refusing, upgrading old files.

Every database here is a real file under ``tmp_path``; the files are inspected with the
plain ``sqlite3`` module, never through the backend's own connection.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import trio

from tractor_reg import PermissionDenied, SchemaError
from tractor_reg.backends import SQLiteBackend, migrate_sqlite, opened_backend
from tractor_reg.backends._sqlite_schema import latest_version, load_migrations

from .conftest import FakeClock

pytestmark = pytest.mark.sqlite

FIXTURES = Path(__file__).parent / "fixtures"
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LATEST = latest_version()


# -- helpers ---------------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def schema(path: Path) -> list[tuple[str, str, str, str | None]]:
    """Every schema object of the file (type, name, table, SQL text), sorted."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return sorted(rows, key=lambda r: (r[0], r[1]))


def table_rows(path: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    finally:
        conn.close()


def meta_revision_rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT key, value FROM meta WHERE key = 'revision'").fetchall()
    finally:
        conn.close()


def build_reference(path: Path, upto: int) -> None:
    """Apply migrations 1..upto with plain sqlite3, as the files say, nothing else."""
    conn = sqlite3.connect(path)
    try:
        for migration in load_migrations()[:upto]:
            conn.executescript(migration.sql)
            conn.execute(f"PRAGMA user_version = {migration.version}")
        conn.commit()
    finally:
        conn.close()


def build_from_fixture(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript((FIXTURES / f"sqlite_v{version}.sql").read_text("utf-8"))
        conn.commit()
    finally:
        conn.close()


def make_newer(path: Path) -> None:
    """A database written by a future tractor_reg: our schema, user_version latest + 1."""
    build_reference(path, LATEST)
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE future_things (x INTEGER)")
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
        conn.commit()
    finally:
        conn.close()


# -- the shipped files -------------------------------------------------------------------------


def test_migration_files_are_shipped_and_numbered_without_gaps() -> None:
    package = resources.files("tractor_reg.migrations.sqlite")
    shipped = sorted(item.name for item in package.iterdir() if item.name.endswith(".sql"))
    assert shipped, "no migration files found in the tractor_reg.migrations.sqlite package"
    # A misnamed file would be silently ignored by the loader: refuse it here.
    for name in shipped:
        assert MIGRATION_NAME.match(name), f"migration file {name!r} is not NNNN_name.sql"
    migrations = load_migrations()
    assert [m.name for m in migrations] == shipped
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for migration in migrations:
        match = MIGRATION_NAME.match(migration.name)
        assert match is not None
        assert int(match.group(1)) == migration.version
        assert migration.sql == (package / migration.name).read_text("utf-8")
        assert migration.sql.strip(), f"{migration.name} is empty"
    assert migrations[-1].version == LATEST


# -- empty -> latest -----------------------------------------------------------------------------


async def test_migrate_missing_file_to_latest(tmp_path: Path) -> None:
    path = tmp_path / "new" / "registry.db"
    report = await migrate_sqlite(str(path))
    assert report.from_version == 0
    assert report.to_version == LATEST
    assert report.applied == [m.name for m in load_migrations()]
    assert not report.dry_run
    assert user_version(path) == LATEST
    # Exactly the schema the migration files describe, applied in order.
    build_reference(tmp_path / "reference.db", LATEST)
    assert schema(path) == schema(tmp_path / "reference.db")
    assert meta_revision_rows(path) == [("revision", 0)]
    assert path.stat().st_mode & 0o777 == 0o600


async def test_migrate_accepts_a_url_and_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.touch()
    report = await migrate_sqlite(f"sqlite:///{path}?synchronous=normal")
    assert (report.from_version, report.to_version) == (0, LATEST)
    assert user_version(path) == LATEST


async def test_open_migrates_a_new_file_to_latest(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "registry.db"
    async with opened_backend(f"sqlite:///{path}", clock=clock) as backend:
        assert await backend.revision() == 0
        assert await backend.entries() == []
    assert user_version(path) == LATEST
    build_reference(tmp_path / "reference.db", LATEST)
    assert schema(path) == schema(tmp_path / "reference.db")


async def test_reopen_changes_nothing(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "registry.db"
    async with opened_backend(f"sqlite:///{path}", clock=clock) as backend:
        await backend.register(("alpha", "a1"), [("127.0.0.1", 5001)], 60.0)
        await backend.register(("beta", "b1"), [("127.0.0.1", 5002)], 60.0)

    def state() -> tuple[object, ...]:
        return (
            user_version(path),
            schema(path),
            table_rows(path, "entries"),
            table_rows(path, "meta"),
            table_rows(path, "changes"),
        )

    before = state()
    async with opened_backend(f"sqlite:///{path}", clock=clock) as backend:
        assert len(await backend.entries()) == 2
    assert state() == before

    report = await migrate_sqlite(str(path))
    assert report.applied == []
    assert (report.from_version, report.to_version) == (LATEST, LATEST)
    assert state() == before


# -- newer than the code -------------------------------------------------------------------------


async def test_newer_database_is_refused_by_open_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    make_newer(path)
    before = digest(path)
    backend = SQLiteBackend(str(path))
    with pytest.raises(SchemaError, match="newer"):
        await backend.open()
    await backend.aclose()
    assert digest(path) == before
    assert user_version(path) == LATEST + 1


@pytest.mark.parametrize("dry_run", [False, True], ids=["migrate", "dry-run"])
async def test_newer_database_is_refused_by_migrate_and_left_untouched(
    tmp_path: Path, dry_run: bool
) -> None:
    path = tmp_path / "registry.db"
    make_newer(path)
    before = digest(path)
    with pytest.raises(SchemaError, match="newer"):
        await migrate_sqlite(str(path), dry_run=dry_run)
    assert digest(path) == before


# -- dry run ---------------------------------------------------------------------------------------


async def test_dry_run_on_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "registry.db"
    report = await migrate_sqlite(str(path), dry_run=True)
    assert report.dry_run
    assert (report.from_version, report.to_version) == (0, LATEST)
    assert report.applied == [m.name for m in load_migrations()]
    assert not path.exists()
    assert not path.parent.exists()


@pytest.mark.parametrize("version", range(1, LATEST + 1))
async def test_dry_run_reports_pending_without_writing(tmp_path: Path, version: int) -> None:
    path = tmp_path / "registry.db"
    build_reference(path, version)
    before = digest(path)
    report = await migrate_sqlite(str(path), dry_run=True)
    assert report.dry_run
    assert report.from_version == version
    assert report.to_version == LATEST
    assert report.applied == [m.name for m in load_migrations()[version:]]
    assert digest(path) == before
    assert user_version(path) == version


# -- several processes opening one new file at once ------------------------------------------------

OPENER = r"""
import sys
import trio
from tractor_reg.backends import SQLiteBackend

path, index = sys.argv[1], int(sys.argv[2])
print("READY", flush=True)
sys.stdin.readline()  # everyone starts together


async def main():
    backend = SQLiteBackend(path)
    await backend.open()
    try:
        await backend.register(("proc", str(index)), [("127.0.0.1", 20000 + index)], 600.0)
    finally:
        await backend.aclose()


trio.run(main)
print("OK", flush=True)
"""


async def _read_line(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes:
    while b"\n" not in buf:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(4096):
        data += chunk
    return data


async def _reap(proc: trio.Process) -> None:
    """Kill the child's process group if it is still running, wait for it, close pipes."""
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


async def _run_openers(path: Path, count: int) -> list[tuple[int, bytes, bytes]]:
    """Start ``count`` processes, release them at once, return (rc, stdout, stderr) each."""
    procs: list[trio.Process] = []
    results: list[tuple[int, bytes, bytes]] = []
    try:
        for index in range(count):
            procs.append(
                await trio.lowlevel.open_process(
                    [sys.executable, "-c", OPENER, str(path), str(index)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
        bufs = [bytearray() for _ in procs]
        for proc, buf in zip(procs, bufs, strict=True):
            assert proc.stdout is not None and proc.stderr is not None
            with trio.move_on_after(20):
                line = await _read_line(proc.stdout, buf)
            if line != b"READY":
                proc.kill()
                err = await _read_all(proc.stderr)
                pytest.fail(f"opener did not say READY: {line!r}\n{err.decode()[-2000:]}")
        for proc in procs:
            assert proc.stdin is not None
            await proc.stdin.send_all(b"go\n")
        with trio.fail_after(30):
            for proc, buf in zip(procs, bufs, strict=True):
                assert proc.stdout is not None and proc.stderr is not None
                out = bytes(buf) + await _read_all(proc.stdout)
                err = await _read_all(proc.stderr)
                results.append((await proc.wait(), out, err))
    finally:
        for proc in procs:
            await _reap(proc)
    return results


async def test_several_processes_open_one_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    results = await _run_openers(path, 4)
    for rc, out, err in results:
        assert rc == 0 and out.strip().endswith(b"OK"), (
            f"an opener failed (rc={rc}): {out.decode()!r}\n{err.decode()[-2000:]}"
        )
    assert user_version(path) == LATEST
    # Each migration applied exactly once: one 'revision' row, every table created once.
    assert meta_revision_rows(path) == [("revision", 4)]
    build_reference(tmp_path / "reference.db", LATEST)
    assert schema(path) == schema(tmp_path / "reference.db")
    names = sorted((r[0], r[1]) for r in table_rows(path, "entries"))
    assert names == [("proc", str(i)) for i in range(4)]


async def test_concurrent_openers_stress(tmp_path: Path) -> None:
    """Many rounds of 6 backends (separate connections and threads) opening one new file.

    Same situation as several processes (SQLite locks across connections of one process
    exactly as across processes), repeated so that narrow races show up: reading the
    schema version and the table list in two statements (another opener's migration
    committing in between made a fresh file look like another application's database),
    and ``PRAGMA journal_mode=WAL`` answering BUSY at once instead of waiting.
    """
    failures: list[str] = []
    for round_ in range(30):
        path = tmp_path / f"round{round_}.db"
        backends = [SQLiteBackend(str(path)) for _ in range(6)]

        async def open_one(backend: SQLiteBackend, round_: int = round_) -> None:
            try:
                await backend.open()
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                failures.append(f"round {round_}: {type(exc).__name__}: {exc}")

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for backend in backends:
                    nursery.start_soon(open_one, backend)
        for backend in backends:
            await backend.aclose()
        if failures:
            break
        assert user_version(path) == LATEST
        assert meta_revision_rows(path) == [("revision", 0)]
    assert not failures, failures


# -- every earlier version upgrades with its rows intact ---------------------------------------


def test_a_fixture_exists_for_every_earlier_version() -> None:
    missing = [
        f"sqlite_v{version}.sql"
        for version in range(1, LATEST)
        if not (FIXTURES / f"sqlite_v{version}.sql").is_file()
    ]
    assert not missing, (
        f"no fixture for schema version(s) {missing} in {FIXTURES}: a new migration needs a "
        "checked-in SQL dump of a database at the previous version (with a few rows)"
    )


@pytest.mark.parametrize("version", range(1, LATEST))
def test_fixture_matches_the_historical_schema(tmp_path: Path, version: int) -> None:
    """The fixture's schema is exactly what migrations 1..version create."""
    fixture = FIXTURES / f"sqlite_v{version}.sql"
    if not fixture.is_file():
        pytest.fail(f"missing fixture {fixture.name}")
    build_from_fixture(tmp_path / "fixture.db", version)
    build_reference(tmp_path / "reference.db", version)
    assert user_version(tmp_path / "fixture.db") == version
    assert schema(tmp_path / "fixture.db") == schema(tmp_path / "reference.db")
    assert table_rows(tmp_path / "fixture.db", "entries"), "the fixture should hold a few rows"


FIXTURE_NOW = 1_000_000.0


@pytest.mark.parametrize("via", ["open", "migrate_sqlite"])
@pytest.mark.parametrize("version", range(1, LATEST))
async def test_earlier_version_upgrades_with_rows_intact(
    tmp_path: Path, version: int, via: str
) -> None:
    fixture = FIXTURES / f"sqlite_v{version}.sql"
    if not fixture.is_file():
        pytest.fail(f"missing fixture {fixture.name}")
    path = tmp_path / "registry.db"
    build_from_fixture(path, version)
    rows_before = table_rows(path, "entries")
    revision_before = meta_revision_rows(path)[0][1]

    if via == "migrate_sqlite":
        report = await migrate_sqlite(str(path))
        assert report.from_version == version
        assert report.to_version == LATEST
        assert report.applied == [m.name for m in load_migrations()[version:]]
    clock = FakeClock(FIXTURE_NOW)
    async with opened_backend(f"sqlite:///{path}", clock=clock) as backend:
        assert user_version(path) == LATEST
        # Every row keeps its columns; columns added since hold their defaults (0003:
        # owner X'', an unowned row).
        rows_after = table_rows(path, "entries")
        width = len(rows_before[0])
        assert [r[:width] for r in rows_after] == rows_before
        if version < 3:
            assert {r[7] for r in rows_after} == {b""}  # entries.owner
        assert await backend.revision() == revision_before
        # Every live row is served, in revision order, with its stored fields.
        live = [r for r in rows_before if float(r[5]) > FIXTURE_NOW]  # type: ignore[arg-type]
        served = await backend.entries()
        assert sorted((e.name, e.uuid) for e in served) == sorted((r[0], r[1]) for r in live)
        assert [e.revision for e in served] == sorted(e.revision for e in served)
        for entry in served:
            row = next(r for r in rows_before if (r[0], r[1]) == entry.uid)
            assert (entry.revision, entry.registered_at, entry.expires_at, entry.registrar) == (
                row[3],
                row[4],
                row[5],
                row[6],
            )
            for addr in entry.addrs:
                assert await backend.owner_of(addr) == entry
        # Lookups answer the latest registration of each name.
        for name in {e.name for e in served}:
            latest = max((e for e in served if e.name == name), key=lambda e: e.revision)
            assert await backend.lookup(name) == latest
        # New writes continue the stored revision.
        entry = await backend.register(("upgraded", "u1"), [("127.0.0.1", 6001)], 60.0)
        assert entry.revision == revision_before + 1
    build_reference(tmp_path / "reference.db", LATEST)
    assert schema(path) == schema(tmp_path / "reference.db")


async def test_v1_fixture_is_served_as_documented(tmp_path: Path) -> None:
    """The concrete rows of sqlite_v1.sql (a sanity check of the generic test above)."""
    path = tmp_path / "registry.db"
    build_from_fixture(path, 1)
    async with opened_backend(f"sqlite:///{path}", clock=FakeClock(FIXTURE_NOW)) as backend:
        assert await backend.revision() == 4
        alpha = await backend.lookup("alpha")
        assert alpha is not None and alpha.uid == ("alpha", "a2")
        assert alpha.addrs == (("/run/tractor", "a2.sock"), ("127.0.0.1", 4003))
        assert [e.uuid for e in await backend.lookup_all("alpha")] == ["a2", "a1"]
        beta = await backend.lookup("beta")
        assert beta is not None and beta.registrar == "reg-1"
        assert await backend.lookup("gamma") is None  # its lease ended before the upgrade
        assert [e.uid for e in await backend.purge_expired()] == [("gamma", "g1")]
        assert await backend.revision() == 5


async def test_v2_rows_are_unowned_and_adopted_by_their_next_registration(
    tmp_path: Path,
) -> None:
    """Rows from before registrations were owned (schema 2) are served as they were, owned
    by nobody; the next registration of a uid adopts it, and from then on it is owned."""
    path = tmp_path / "registry.db"
    build_from_fixture(path, 2)
    mine, theirs = bytes([1]) * 32, bytes([2]) * 32
    async with opened_backend(f"sqlite:///{path}", clock=FakeClock(FIXTURE_NOW)) as backend:
        alpha = await backend.get(("alpha", "a1"))
        assert alpha is not None and alpha.owner == b""
        assert alpha.addrs == (("127.0.0.1", 4001),)
        # an owner's renew treats it as absent: the actor registers again, and adopts it
        assert await backend.renew(("alpha", "a1"), 30.0, owner=mine) is None
        adopted = await backend.register(("alpha", "a1"), [("127.0.0.1", 4001)], 30.0, owner=mine)
        assert adopted.owner == mine
    async with opened_backend(f"sqlite:///{path}", clock=FakeClock(FIXTURE_NOW)) as backend:
        reloaded = await backend.get(("alpha", "a1"))
        assert reloaded is not None and reloaded.owner == mine
        with pytest.raises(PermissionDenied):
            await backend.register(("alpha", "a1"), [("127.0.0.1", 4009)], 30.0, owner=theirs)
        beta = await backend.get(("beta", "b1"))
        assert beta is not None and beta.owner == b"" and beta.registrar == "reg-1"
