"""Stores with rows that cannot be decoded, or with damaged pages, stay usable.

Real SQLite files corrupted with the ``sqlite3`` module (text that is not UTF-8, wrong
types, malformed address JSON) or by writing bytes into a page of the file; a real
``tractor-reg serve`` process and real CLI invocations; a real redis-server for the
Redis rows. Every case checks the clear message and that every good row is still served,
exported or kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

from tests.conftest import free_port
from tests.procs import registrar_argv, spawn
from tests.redis_servers import REDIS_SERVER, RedisServer, start_standalone
from tests.test_cli import CLI, _env, cli, failed, ls_json, ok, populate, stop
from tractor_reg.backends import SQLiteBackend, open_backend
from tractor_reg.backends._redis import RedisBackend

needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

#: Corruptions of one row: (table, column, SQL value expression, what check reports).
CORRUPTIONS = [
    pytest.param(
        "entries", "name", "CAST(X'ff62616401' AS TEXT)", "text that is not valid UTF-8", id="utf8"
    ),
    pytest.param("entries", "addrs", "'[[\"127.0.0.1\", 1'", "bad addresses", id="json"),
    pytest.param("entries", "revision", "'seven'", "not an integer", id="type"),
    # read as "unowned" a damaged owner would let anyone take the entry over
    pytest.param("entries", "owner", "'abc'", "not a 32-byte digest", id="owner-text"),
    pytest.param("entries", "owner", "X'0102'", "not a 32-byte digest", id="owner-short"),
]


def make_store(tmp_path: Path, live: int = 4) -> tuple[Path, str, list[dict[str, Any]]]:
    db = tmp_path / "reg.db"
    url = f"sqlite:///{db}"
    good = populate(url, live=live, expired=0)
    return db, url, good


def sql(db: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(statement, params)
    finally:
        conn.close()


def rows(db: Path, table: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    conn.text_factory = bytes
    try:
        return conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()
    finally:
        conn.close()


def rowid_of(db: Path, uuid: str, table: str = "entries") -> int:
    conn = sqlite3.connect(db)
    try:
        found = conn.execute(
            f"SELECT rowid FROM {table} WHERE uuid = ? ORDER BY rowid DESC", (uuid,)
        ).fetchone()
        return int(found[0])
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def break_rows(db: Path, column: str, value: str) -> tuple[int, int]:
    """Corrupt the entries row of svc1 (``column`` set to ``value``) and the change row of
    svc2's registration (reason: text that is not UTF-8). Returns their rowids."""
    entry = rowid_of(db, "uuid-live-1")
    change = rowid_of(db, "uuid-live-2", "changes")
    sql(db, f"UPDATE entries SET {column} = {value} WHERE rowid = ?", (entry,))
    sql(db, "UPDATE changes SET reason = CAST(X'c328' AS TEXT) WHERE seq = ?", (change,))
    return entry, change


def damage_index(db: Path, index: str = "entries_by_name") -> None:
    """Overwrite the header of an index's root page: a b-tree page SQLite cannot use,
    which reading the table (what a registrar does at open) never visits."""
    conn = sqlite3.connect(db)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,))
        page = int(root.fetchone()[0])
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()
    assert not Path(f"{db}-wal").exists()
    with open(db, "r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(b"\x0d" + b"\xff" * 7)


# -- serve ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "column", "value", "reason"), CORRUPTIONS)
def test_serve_skips_undecodable_rows_and_serves_every_good_one(
    tmp_path: Path, table: str, column: str, value: str, reason: str
) -> None:
    db, url, good = make_store(tmp_path)
    entry_rowid, change_rowid = break_rows(db, column, value)
    before = rows(db, "entries")
    addr = f"tcp://127.0.0.1:{free_port()}"
    with spawn(registrar_argv(addr, extra=["--backend", url])) as proc:
        proc.wait_line("READY")
        listed = {(e["name"], e["uuid"]) for e in ls_json(addr)}
        assert {(g["name"], g["uuid"]) for g in good if g["name"] != "svc1"} <= listed
        assert ("svc1", "uuid-live-1") not in listed
        stop(proc)
        log = proc.stderr_tail(20000)
    assert f"skipping invalid row entries rowid {entry_rowid}" in log, log
    assert f"column {column}: {reason}" in log, log
    assert f"skipping invalid change changes seq {change_rowid}" in log, log
    assert "column reason: text that is not valid UTF-8" in log, log
    # Nothing stored was lost: every row, the bad one too, is still in the file.
    after = rows(db, "entries")
    assert [r for r in before if r in after] == before


async def test_a_follower_replays_past_a_change_that_is_not_utf8(tmp_path: Path) -> None:
    """A change row committed after a registrar loaded the file, with text that is not
    UTF-8: polling skips it (ERROR) and goes on replaying the good rows after it."""
    db = tmp_path / "reg.db"
    a, b = SQLiteBackend(str(db)), SQLiteBackend(str(db))
    await a.open()
    await b.open()
    try:
        await a.register(("bad", "1"), [("127.0.0.1", 5001)], 600.0)
        sql(db, "UPDATE changes SET name = CAST(X'ff' AS TEXT) WHERE uuid = '1'")
        later = await a.register(("good", "2"), [("127.0.0.1", 5002)], 600.0)
        with trio.fail_after(10):
            await b.poll()
        assert await b.lookup("good") == later
        assert await b.lookup("bad") is None
        assert [str(r.reason) for r in b.bad_rows] == [
            "column name: text that is not valid UTF-8: b'\\xff'"
        ]
        # and it still writes
        await b.register(("more", "3"), [("127.0.0.1", 5003)], 600.0)
        await a.poll()
        assert (await a.lookup("more")) is not None
    finally:
        await a.aclose()
        await b.aclose()


# -- export -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "column", "value", "reason"), CORRUPTIONS)
def test_export_writes_every_good_row_and_says_what_it_skipped(
    tmp_path: Path, table: str, column: str, value: str, reason: str
) -> None:
    db, url, good = make_store(tmp_path)
    entry_rowid, _ = break_rows(db, column, value)
    out = tmp_path / "out.jsonl"
    result = cli("export", "--backend", url, "-o", str(out))
    error = failed(result)
    assert "skipped 1 invalid row(s)" in error and "--skip-bad" in error
    assert f"skipped invalid row entries rowid {entry_rowid}" in result.stderr
    assert f"column {column}: {reason}" in result.stderr
    assert "; skipped 1 invalid row(s)" in result.stdout
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [(g["name"], g["uuid"]) for g in good if g["name"] != "svc1"]
    assert [(e["name"], e["uuid"]) for e in exported] == expected
    # --skip-bad: the same rows, exit status 0
    again = cli("export", "--backend", url, "--skip-bad")
    assert [
        (json.loads(line)["name"], json.loads(line)["uuid"]) for line in ok(again).splitlines()
    ] == expected
    assert f"skipped invalid row entries rowid {entry_rowid}" in again.stderr


# -- check ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "column", "value", "reason"), CORRUPTIONS)
def test_check_reports_each_bad_row_precisely(
    tmp_path: Path, table: str, column: str, value: str, reason: str
) -> None:
    db, url, _ = make_store(tmp_path)
    entry_rowid, change_rowid = break_rows(db, column, value)
    kept = digest(db)
    result = cli("check", "--backend", url, "--json")
    failed(result)
    doc = json.loads(result.stdout)
    assert doc["integrity"] == "ok" and doc["entries"] == 3 and doc["invalid_rows"] == 2
    bad = doc["bad_rows"]
    assert [(b["table"], b["rowid"], b["column"]) for b in bad] == [
        ("entries", entry_rowid, column),
        ("changes", change_rowid, "reason"),
    ]
    assert reason in bad[0]["reason"] and "not valid UTF-8" in bad[1]["reason"]
    text = cli("check", "--backend", url)
    failed(text)
    assert f"bad row: table entries rowid {entry_rowid} column {column}: " in text.stdout
    assert f"bad row: table changes rowid {change_rowid} column reason: " in text.stdout
    assert digest(db) == kept  # check only reads


def test_check_reports_a_bad_change_row_alone(tmp_path: Path) -> None:
    """Only the change log holds a bad row: not a healthy file."""
    db, url, _ = make_store(tmp_path)
    change = rowid_of(db, "uuid-live-0", "changes")
    sql(db, "UPDATE changes SET addrs = 'nope' WHERE seq = ?", (change,))
    error = failed(cli("check", "--backend", url))
    assert f"table changes rowid {change} column addrs: bad addresses 'nope'" in error


def test_damaged_page_check_reports_it_serve_refuses_it(tmp_path: Path) -> None:
    db, url, _ = make_store(tmp_path)
    damage_index(db)
    kept = digest(db)
    checked = cli("check", "--backend", url, "--json")
    error = failed(checked)
    assert "the file is damaged (integrity_check:" in error and ".recover" in error
    assert json.loads(checked.stdout)["integrity"] != "ok"
    quick = failed(cli("check", "--backend", url, "--quick"))
    assert "the file is damaged (quick_check:" in quick

    served = subprocess.run(
        registrar_argv(f"tcp://127.0.0.1:{free_port()}", extra=["--backend", url]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert served.returncode == 1, (served.stdout, served.stderr)
    assert "READY" not in served.stdout
    assert "is damaged (PRAGMA quick_check:" in served.stderr
    assert "restore" in served.stderr and ".recover" in served.stderr
    assert digest(db) == kept  # refused before anything was written
    assert not Path(f"{db}-wal").exists()


def test_quick_check_at_open_can_be_bounded(tmp_path: Path) -> None:
    """quick_check_max_mb=0 turns the open-time check off (the damage is then met later)."""
    db, url, _ = make_store(tmp_path)
    damage_index(db)
    addr = f"tcp://127.0.0.1:{free_port()}"
    with spawn(registrar_argv(addr, extra=["--backend", url + "?quick_check_max_mb=0"])) as proc:
        proc.wait_line("READY")
        stop(proc)


def _unprivileged() -> list[str]:
    """A prefix that runs a command without root's permission overrides."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file read-only")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tr-ro-"))
    try:
        yield directory
    finally:
        directory.chmod(0o700)
        shutil.rmtree(directory)


def test_check_reads_a_read_only_file_and_calls_it_healthy(read_only_dir: Path) -> None:
    db = read_only_dir / "reg.db"
    url = f"sqlite:///{db}"
    populate(url, live=3, expired=0)
    kept = digest(db)
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    read_only_dir.chmod(0o555)
    prefix = _unprivileged()
    probe = subprocess.run([*prefix, "touch", str(read_only_dir / "x")], capture_output=True)
    assert probe.returncode != 0, "the directory is writable: the test proves nothing"
    result = subprocess.run(
        [*prefix, *cli_argv("check", "--backend", url, "--json")],
        capture_output=True,
        text=True,
        timeout=30,
        env=cli_env(),
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["integrity"] == "ok" and doc["entries"] == 3
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["reg.db"]
    assert digest(db) == kept


def cli_argv(*args: str) -> list[str]:
    return [*CLI, *args]


def cli_env() -> dict[str, str]:
    return _env()


# -- repair -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "column", "value", "reason"), CORRUPTIONS)
def test_repair_quarantines_the_bad_rows_and_keeps_every_good_one(
    tmp_path: Path, table: str, column: str, value: str, reason: str
) -> None:
    db, url, good = make_store(tmp_path)
    entry_rowid, change_rowid = break_rows(db, column, value)
    entries_before, changes_before = rows(db, "entries"), rows(db, "changes")
    quarantine = tmp_path / "bad.jsonl"
    repaired = ok(cli("check", "--backend", url, "--repair", "--quarantine", str(quarantine)))
    assert f"moved 2 bad row(s) to {quarantine}" in repaired
    assert "status        OK" in repaired
    moved = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [(m["table"], m["rowid"], m["column"]) for m in moved] == [
        ("entries", entry_rowid, column),
        ("changes", change_rowid, "reason"),
    ]
    assert moved[1]["values"]["reason"] == {"text_hex": "c328"}
    # Exactly the bad rows are gone; every other row is byte-for-byte the same.
    assert rows(db, "entries") == [r for r in entries_before if r[0] != entry_rowid]
    assert rows(db, "changes") == [r for r in changes_before if r[0] != change_rowid]
    exported = [json.loads(line) for line in ok(cli("export", "--backend", url)).splitlines()]
    assert [e["name"] for e in exported] == [g["name"] for g in good if g["name"] != "svc1"]
    # A second repair finds nothing.
    assert "no bad rows; nothing changed" in ok(cli("check", "--backend", url, "--repair"))


def test_repair_refuses_a_damaged_file(tmp_path: Path) -> None:
    db, url, _ = make_store(tmp_path)
    break_rows(db, "addrs", "'zz'")
    damage_index(db)
    kept = digest(db)
    error = failed(cli("check", "--backend", url, "--repair"))
    assert "refusing to repair" in error and "damaged" in error and ".recover" in error
    assert digest(db) == kept
    assert not list(tmp_path.glob("*.quarantine-*"))


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_store() -> Iterator[RedisServer]:
    server = start_standalone()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis
@needs_redis
def test_redis_bad_field_and_stream_entry_skipped_by_serve_export_check(
    redis_store: RedisServer,
) -> None:
    url = f"{redis_store.url}?namespace=bad-{uuidlib.uuid4().hex[:12]}"
    good = populate(url, live=3, expired=0)
    backend = open_backend(url)
    assert isinstance(backend, RedisBackend)
    keys = backend.keys
    client = redis.Redis(host="127.0.0.1", port=redis_store.port, socket_timeout=5)
    try:
        client.hset(keys["entries"], '["bad","1"]', b'{"name": "\xff\xfe"}')
        client.xadd(keys["changes"], {"q": "999", "r": "zz", "k": "upsert"})
    finally:
        client.close()

    addr = f"tcp://127.0.0.1:{free_port()}"
    with spawn(registrar_argv(addr, extra=["--backend", url])) as proc:
        proc.wait_line("READY")
        listed = {(e["name"], e["uuid"]) for e in ls_json(addr)}
        assert {(g["name"], g["uuid"]) for g in good} <= listed
        stop(proc)
        log = proc.stderr_tail(20000)
    assert f"skipping invalid row {keys['entries']} field" in log, log

    export = cli("export", "--backend", url)
    assert "skipped 1 invalid row(s)" in failed(export)
    assert sorted(json.loads(line)["name"] for line in export.stdout.splitlines()) == [
        g["name"] for g in good
    ]
    checked = cli("check", "--backend", url, "--json")
    failed(checked)
    bad = json.loads(checked.stdout)["bad_rows"]
    assert [(b["kind"], b["table"]) for b in bad][:1] == [("entry", keys["entries"])]
    assert any(b["kind"] == "change" and b["table"] == keys["changes"] for b in bad), bad


def test_an_address_held_by_two_uids_goes_to_the_newer(tmp_path: Path) -> None:
    """A file edited so that two entries hold one address: check names the older row,
    and a registrar serves the address for the newer holder only, as a registration
    would have left it."""
    db, url, good = make_store(tmp_path)
    older = rowid_of(db, "uuid-live-1")
    conn = sqlite3.connect(db)
    try:
        [shared] = conn.execute("SELECT addrs FROM entries WHERE uuid = 'uuid-live-2'").fetchone()
    finally:
        conn.close()
    sql(db, "UPDATE entries SET addrs = ? WHERE rowid = ?", (shared, older))
    result = cli("check", "--backend", url, "--json")
    failed(result)
    bad = json.loads(result.stdout)["bad_rows"]
    assert [(b["table"], b["rowid"], b["column"]) for b in bad] == [("entries", older, "addrs")]
    assert "also held by the newer ('svc2', 'uuid-live-2')" in bad[0]["reason"]
    addr = f"tcp://127.0.0.1:{free_port()}"
    with spawn(registrar_argv(addr, extra=["--backend", url])) as proc:
        proc.wait_line("READY")
        host, port = json.loads(shared)[0]
        holders = [
            (e["name"], e["uuid"]) for e in ls_json(addr) if f"tcp://{host}:{port}" in e["addrs"]
        ]
        stop(proc)
        log = proc.stderr_tail(20000)
    assert holders == [("svc2", "uuid-live-2")], holders
    assert "is held by ('svc1', 'uuid-live-1') and by the newer ('svc2', 'uuid-live-2')" in log
    assert {g["uuid"] for g in good} >= {"uuid-live-2"}
