"""The ``tractor-reg`` console script, driven as users drive it: in subprocesses.

Every registrar is a real ``python -m tractor_reg serve`` on a free port; every actor a
real joiner process; every command a real ``python -m tractor_reg ...`` whose stdout,
stderr and exit code are checked. Waits are for lines on stdout, each with a deadline.
No command may touch the user's registry or state directory: ``XDG_STATE_HOME`` points
into the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import free_port
from tests.procs import REPO, Proc, joiner_argv, registrar_argv, spawn, wait_gone
from tests.redis_servers import REDIS_SERVER, RedisServer, start_standalone
from tractor_reg.backends import opened_backend

CLI = [sys.executable, "-m", "tractor_reg"]
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store of every command lives under the test's tmp_path."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("TRACTOR_REG_LOG_LEVEL", raising=False)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20.0, stderr: Any = None
) -> subprocess.CompletedProcess[str]:
    """Run one command to completion (killed, and the test failed, after ``timeout``)."""
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO,
        env=_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
        timeout=timeout,
    )


def cli_all(*calls: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Independent read-only commands, run concurrently (each pays interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda argv: cli(*argv), calls))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single error line of a failed command (no traceback)."""
    assert result.returncode == code, (result.args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tractor-reg: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@contextmanager
def serving(backend: str, addr: str | None = None) -> Iterator[tuple[str, Proc]]:
    """``tractor-reg serve`` on a free port; yields its address once it printed READY."""
    addr = addr or f"tcp://127.0.0.1:{free_port()}"
    with spawn(registrar_argv(addr, extra=["--backend", backend])) as proc:
        line = proc.wait_line("READY")
        assert line == f"READY {addr} backend={backend}", line
        yield addr, proc


@contextmanager
def joined(name: str, reg: str, ttl: float = 120.0) -> Iterator[tuple[str, str, Proc]]:
    """A live actor called ``name``; yields (uuid, address, process) once registered.

    The lease is long, so that no renewal (which re-registers a removed actor) happens
    while a test runs.
    """
    with spawn(joiner_argv(name, reg, ttl=ttl)) as proc:
        _, uuid, addr = proc.wait_line("READY").split()[:3]
        yield uuid, addr, proc


def kill(proc: Proc) -> None:
    proc.signal(signal.SIGKILL)
    proc.wait(10)
    wait_gone(proc.pid)


def stop(proc: Proc) -> None:
    """SIGTERM a serve and check it exits cleanly."""
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr_tail()


def ls_json(reg: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(ok(cli("ls", "--registry", reg, "--json")))
    return entries


def export_lines(backend: str) -> list[dict[str, Any]]:
    out = ok(cli("export", "--backend", backend))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def comparable(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((e["name"], e["uuid"], tuple(e["addrs"]), e["registrar"]) for e in entries)


def populate(url: str, live: int = 2, expired: int = 1) -> list[dict[str, Any]]:
    """Write entries straight into a store: ``live`` ones, and ``expired`` ones whose
    lease ended an hour ago (written with a clock set back by two hours)."""

    async def write() -> None:
        async with opened_backend(url) as backend:
            for i in range(live):
                await backend.register(
                    (f"svc{i}", f"uuid-live-{i}"),
                    [("127.0.0.1", 40000 + i)],
                    600.0,
                    registrar="reg@test",
                )
        async with opened_backend(url, clock=lambda: time.time() - 7200) as backend:
            for i in range(expired):
                await backend.register(
                    (f"old{i}", f"uuid-old-{i}"), [("127.0.0.1", 41000 + i)], 3600.0
                )

    trio.run(write)
    return [
        {"name": f"svc{i}", "uuid": f"uuid-live-{i}", "addrs": [f"tcp://127.0.0.1:{40000 + i}"]}
        for i in range(live)
    ]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = start_standalone()
    try:
        yield server
    finally:
        server.stop()


def redis_url(server: RedisServer) -> str:
    return f"{server.url}?namespace=cli-{uuidlib.uuid4().hex[:12]}"


# -- help and usage errors ---------------------------------------------------------------------


def test_help_lists_the_environment_variables() -> None:
    top, serve, ls, imp = cli_all(
        ["--help"], ["serve", "--help"], ["ls", "--help"], ["import", "--help"]
    )
    for name in ("TRACTOR_REG_REGISTRY_ADDRS", "TRACTOR_REG_BACKEND", "TRACTOR_REG_LOG_LEVEL"):
        assert name in ok(top)
    assert "serve" in top.stdout and "import" in top.stdout and "exit codes" in top.stdout
    for name in ("TRACTOR_REG_BACKEND", "TRACTOR_REG_REGISTRY_ADDRS", "XDG_STATE_HOME"):
        assert name in ok(serve)
    assert "--listen" in serve.stdout and "--log-format" in serve.stdout
    assert "TRACTOR_REG_REGISTRY_ADDRS" in ok(ls) and "--registry" in ls.stdout
    assert "TRACTOR_REG_BACKEND" in ok(imp) and "--skip-bad" in imp.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["ls", "--bogus"], "ls: unrecognized arguments: --bogus"),
        (["--frobnicate", "ls"], "unrecognized arguments: --frobnicate"),
        (["find"], "the following arguments are required: name"),
        (["ls", "--registry", "nonsense"], "argument --registry: unknown address scheme"),
        (["stats", "--registry", "tcp://127.0.0.1:notaport"], "argument --registry"),
        (["serve", "--listen", "uds://relative.sock"], "argument --listen"),
        (["wait", "svc", "--timeout", "-1"], "argument --timeout"),
        (["ls", "--log-level", "loud"], "unknown log level 'loud'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_usage_errors_exit_2_with_usage(argv: list[str], expected: str) -> None:
    result = cli(*argv)
    line = failed(result, 2)
    assert expected in line, line
    assert result.stderr.startswith("usage: tractor-reg"), result.stderr


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["check", "--backend", "nosuch://x"], {}, "unknown backend scheme 'nosuch'"),
        (["export", "--backend", "sqlite://host/x.db"], {}, "sqlite URLs have no host"),
        (
            ["serve", "--backend", "redis://:hunter2@127.0.0.1:1/0?bogus=1"],
            {},
            "unknown Redis option 'bogus'",
        ),
        (["prune"], {"TRACTOR_REG_BACKEND": "memory://somewhere"}, "$TRACTOR_REG_BACKEND"),
        (["ls"], {"TRACTOR_REG_REGISTRY_ADDRS": "garbage"}, "$TRACTOR_REG_REGISTRY_ADDRS"),
    ],
    ids=["unknown-scheme", "sqlite-host", "redis-option", "env-backend", "env-registry"],
)
def test_malformed_backend_urls_and_addresses(
    argv: list[str], env: dict[str, str], expected: str
) -> None:
    result = cli(*argv, env=env)
    line = failed(result, 2)
    assert expected in line, line
    assert "hunter2" not in result.stderr + result.stdout


def test_unreachable_registry_is_one_clear_line() -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"
    plain, debug = cli_all(
        ["ls", "--registry", dead], ["stats", "--registry", dead, "--log-level", "debug"]
    )
    line = failed(plain)
    assert f"no registrar answers at {dead}" in line, line
    assert plain.stderr.strip() == line
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr  # --log-level debug shows where it came from
    assert f"tractor-reg: error: no registrar answers at {dead}" in debug.stderr
    # the level comes from the flag, else $TRACTOR_REG_LOG_LEVEL
    env = {"TRACTOR_REG_LOG_LEVEL": "debug"}
    from_env = cli("find", "x", "--registry", dead, env=env)
    assert from_env.returncode == 1 and "Traceback" in from_env.stderr
    flag_wins = cli("find", "x", "--registry", dead, "--log-level", "error", env=env)
    assert "no registrar answers" in failed(flag_wins)


@contextmanager
def plain_listener() -> Iterator[int]:
    """A TCP server that is not a registrar: it answers every connection with HTTP garbage."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        done.set()
        thread.join(5)
        sock.close()


def test_serve_refuses_an_address_held_by_something_else() -> None:
    with plain_listener() as port:
        addr = f"tcp://127.0.0.1:{port}"
        result = cli("serve", "--listen", addr, "--backend", "memory://")
        line = failed(result)
        assert f"{addr} is held by something that is not a tractor_reg registrar" in line
        assert "READY" not in result.stdout


# -- serve and the admin commands ------------------------------------------------------------


def test_admin_commands_against_a_live_registrar() -> None:
    with serving("memory://") as (reg, server):
        # a second registrar on the same address is refused
        line = failed(cli("serve", "--listen", reg, "--backend", "memory://"))
        assert f"a registrar already serves at {reg}" in line

        with (
            joined("svc", reg) as (uuid1, addr1, _),
            joined("svc", reg) as (uuid2, addr2, _),
            joined("other", reg) as (uuid3, _, other),
        ):
            table, as_json, only_svc, find, find_all, find_none, wait_now, wait_none, stats = (
                cli_all(
                    ["ls", "--registry", reg],
                    ["ls", "--registry", reg, "--json"],
                    ["ls", "svc", "--registry", reg, "--json"],
                    ["find", "svc", "--registry", reg],
                    ["find", "svc", "--all", "--json", "--registry", reg],
                    ["find", "nope", "--registry", reg],
                    ["wait", "svc", "--registry", reg],
                    ["wait", "nope", "--timeout", "0.3", "--registry", reg],
                    ["stats", "--registry", reg, "--json"],
                )
            )
            # ls: a readable table
            rows = ok(table).splitlines()
            assert rows[0].split() == ["NAME", "UUID", "ADDRESSES", "AGE", "LEASE", "REGISTRAR"]
            body = "\n".join(rows[1:])
            for uuid, addr in ((uuid1, addr1), (uuid2, addr2)):
                row = next(r for r in rows if uuid in r)
                assert row.split()[0] == "svc" and addr in row
                assert f"registrar@{reg}" in row
            assert uuid3 in body
            # ls --json: every entry with its lease
            entries = {e["uuid"]: e for e in json.loads(ok(as_json))}
            assert entries[uuid1]["addrs"] == [addr1]
            assert entries[uuid2]["name"] == "svc"
            assert 0 < entries[uuid1]["lease_left"] <= 120
            assert entries[uuid1]["registrar"] == f"registrar@{reg}"
            assert {e["uuid"] for e in json.loads(ok(only_svc))} == {uuid1, uuid2}
            # find: the latest registration (svc #2 joined after svc #1)
            assert ok(find).split() == [addr2]
            found = json.loads(ok(find_all))
            assert [f["uuid"] for f in found] == [uuid2, uuid1]
            assert "no actor named 'nope' is registered" in failed(find_none)
            # wait: immediate when registered, bounded by --timeout when not
            assert ok(wait_now).split() == [addr2]
            assert "timed out: no actor named 'nope' registered within 0.3s" in failed(wait_none)
            doc = json.loads(ok(stats))
            assert doc["backend"] == "memory" and doc["backend_healthy"] is True
            assert doc["entries"] == 4  # three actors and the registrar itself
            assert doc["registrations"] >= 4 and isinstance(doc["waiters"], int)
            assert "entries" in ok(cli("stats", "--registry", reg))

            # watch and wait see an actor that joins later
            start = str(doc["revision"])
            argv = [*CLI, "watch", "--registry", reg, "--since", start]
            with (
                spawn([*argv, "late", "--json"]) as watch_json,
                spawn(argv) as watch_text,
                spawn([*CLI, "wait", "late", "--timeout", "20", "--registry", reg]) as waiter,
                joined("late", reg) as (uuid4, addr4, late),
            ):
                change = json.loads(watch_json.wait_line("{"))
                assert change["kind"] == "registered", change
                assert (change["name"], change["uuid"], change["addrs"]) == ("late", uuid4, [addr4])
                assert change["revision"] > int(start)
                text = watch_text.wait_line(f"{change['revision']} registered late {uuid4}")
                assert text.endswith(addr4)
                assert waiter.wait_line("tcp://") == addr4
                assert waiter.wait(10) == 0
                # watch runs until SIGTERM / Ctrl-C, and exits 0 then
                watch_json.signal(signal.SIGTERM)
                watch_text.signal(signal.SIGINT)
                assert watch_json.wait(10) == 0, watch_json.stderr_tail()
                assert watch_text.wait(10) == 0, watch_text.stderr_tail()
                kill(late)

            # rm of a dead actor: verified unreachable, removed
            kill(other)
            removed = ok(cli("rm", "other", "--registry", reg))
            assert removed.strip() == f"removed other {uuid3} (verified unreachable)"
            # rm of live actors: refused without --force, removed with it
            refused = cli("rm", "svc", "--registry", reg)
            assert "2 of 2 matching entries kept" in failed(refused)
            assert f"kept svc {uuid1}" in refused.stdout and f"kept svc {uuid2}" in refused.stdout
            # --force over TCP without a shared secret: refused (it needs the registrar's
            # Unix socket or a secret; tests/test_identity.py shows both)
            denied = failed(cli("rm", uuid1, "--force", "--json", "--registry", reg))
            assert "forced removal needs the registrar's Unix socket" in denied
            # rm of a name nobody has
            missing = failed(cli("rm", "nope", "--registry", reg))
            assert "no registered actor has the name or uuid 'nope'" in missing
            left = {e["uuid"] for e in ls_json(reg)}
            assert {uuid1, uuid2} <= left and uuid3 not in left
        stop(server)


BACKENDS = [
    pytest.param("memory", marks=pytest.mark.memory, id="memory"),
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("redis", marks=[pytest.mark.redis, needs_redis], id="redis"),
]


@pytest.mark.parametrize("kind", BACKENDS)
def test_serve_each_backend_and_sigterm_loses_nothing(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "memory":
        backend = "memory://"
    elif kind == "sqlite":
        backend = f"sqlite:///{tmp_path}/registry.db"
    else:
        backend = redis_url(request.getfixturevalue("redis_server"))
    addr = f"tcp://127.0.0.1:{free_port()}"
    with serving(backend, addr) as (reg, server):
        with joined("alpha", reg) as (uuid_a, addr_a, a), joined("beta", reg) as (uuid_b, _, b):
            # both registrations were acknowledged (the joiners printed READY): crash the
            # actors, so only the store can remember them, then stop the registrar
            kill(a)
            kill(b)
            stats = json.loads(ok(cli("stats", "--registry", reg, "--json")))
            assert stats["backend"] == backend.partition("://")[0]
            stop(server)
    if kind == "memory":
        return
    with serving(backend, addr) as (reg, server):
        entries = {e["uuid"]: e for e in ls_json(reg)}
        assert uuid_a in entries and uuid_b in entries, entries
        assert entries[uuid_a]["addrs"] == [addr_a]
        stop(server)


@pytest.mark.sqlite
def test_serve_defaults_to_a_durable_store_in_the_state_directory(tmp_path: Path) -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    env = {"TRACTOR_REG_REGISTRY_ADDRS": addr}
    with spawn([*CLI, "serve", "--log-format", "json"], env=env) as server:
        line = server.wait_line("READY")
        db = tmp_path / "state" / "tractor_reg" / "registry.db"
        assert line == f"READY {addr} backend=sqlite:///{db}"
        assert db.exists()
        # the registry address comes from the environment for admin commands too
        stats = json.loads(ok(cli("stats", "--json", env={"TRACTOR_REG_REGISTRY_ADDRS": addr})))
        assert stats["backend"] == "sqlite" and stats["addrs"] == [addr]
        server.signal(signal.SIGINT)
        assert server.wait(15) == 0, server.stderr_tail()
        # logs (info by default for serve) are JSON lines on stderr
        logs = [json.loads(line) for line in server.stderr_tail(1_000_000).splitlines()]
        assert {"ts", "level", "logger", "pid", "msg"} <= set(logs[0])
        assert any(f"serving the registry at {addr}" in doc["msg"] for doc in logs)
        assert any(doc["msg"] == "SIGINT: shutting down" for doc in logs)


def test_serve_never_prints_a_password(tmp_path: Path) -> None:
    # an unreachable Redis with a password: serve fails, and says so without the password
    url = f"redis://user:s3cr3t@127.0.0.1:{free_port()}/0?connect_timeout=0.5"
    result = cli("serve", "--listen", f"tcp://127.0.0.1:{free_port()}", "--backend", url)
    line = failed(result)
    assert "user:***@" in line, line
    assert "s3cr3t" not in result.stdout + result.stderr


# -- store commands --------------------------------------------------------------------------


@pytest.mark.sqlite
def test_sqlite_migrate_check_export_prune(tmp_path: Path) -> None:
    db = tmp_path / "reg.db"
    url = f"sqlite:///{db}"
    dry = ok(cli("migrate", "--dry-run", "--backend", url))
    assert "would apply: 0001_entries.sql, 0002_change_log.sql, 0003_entry_owner.sql" in dry
    assert not db.exists()  # a dry run writes nothing
    assert "migrated schema version 0 -> 3" in ok(cli("migrate", "--backend", url))
    again = json.loads(ok(cli("migrate", "--backend", url, "--json")))
    assert again["applied"] == [] and again["to_version"] == 3

    expected = populate(url, live=2, expired=1)
    checked = json.loads(ok(cli("check", "--backend", url, "--json")))
    assert checked["ok"] and checked["reachable"] and checked["integrity"] == "ok"
    assert checked["schema_version"] == checked["latest_schema_version"] == 3
    assert (checked["entries"], checked["expired"], checked["invalid_rows"]) == (2, 1, 0)

    out = tmp_path / "out.jsonl"
    summary = ok(cli("export", "--backend", url, "-o", str(out)))
    assert summary.strip() == f"exported 2 entries from {url} to {out}"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["name"], e["uuid"], e["addrs"]) for e in lines] == [
        (e["name"], e["uuid"], e["addrs"]) for e in expected
    ]
    assert set(lines[0]) == {
        "name",
        "uuid",
        "addrs",
        "revision",
        "registered_at",
        "expires_at",
        "registrar",
    }
    assert lines[0]["registrar"] == "reg@test"
    assert export_lines(url) == lines  # stdout by default

    assert ok(cli("prune", "--backend", url)).strip() == f"pruned 1 expired entries from {url}"
    assert json.loads(ok(cli("check", "--backend", url, "--json")))["expired"] == 0

    # a row edited by hand into garbage: check says so and fails
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET addrs = 'garbage' WHERE name = 'svc0'")
    conn.close()
    broken = cli("check", "--backend", url)
    assert "bad row: table entries rowid 1 column addrs" in failed(broken)
    assert "invalid rows  1" in broken.stdout and "PROBLEMS FOUND" in broken.stdout
    # a missing file
    assert "no database at" in failed(cli("check", "--backend", f"sqlite:///{tmp_path}/no.db"))


@pytest.mark.sqlite
@pytest.mark.redis
@needs_redis
def test_export_then_import_into_sqlite_and_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    populate(source, live=3, expired=1)
    dump = tmp_path / "dump.jsonl"
    ok(cli("export", "--backend", source, "-o", str(dump)))
    original = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(original) == 3

    target_sqlite = f"sqlite:///{tmp_path}/target.db"
    target_redis = redis_url(redis_server)
    into_sqlite, into_redis = cli_all(
        ["import", str(dump), "--backend", target_sqlite],
        ["import", str(dump), "--backend", target_redis, "--json"],
    )
    assert ok(into_sqlite).strip() == (
        f"imported 3 entries into {target_sqlite}; skipped 0 expired"
    )
    assert json.loads(ok(into_redis))["imported"] == 3
    for target in (target_sqlite, target_redis):
        copied = export_lines(target)
        assert comparable(copied) == comparable(original)
        for before, after in zip(
            sorted(original, key=lambda e: e["uuid"]),
            sorted(copied, key=lambda e: e["uuid"]),
            strict=True,
        ):
            assert abs(before["expires_at"] - after["expires_at"]) < 1.0  # same lease left
    checked = json.loads(ok(cli("check", "--backend", target_redis, "--json")))
    assert checked["ok"] and checked["healthy"] and checked["entries"] == 3
    assert checked["schema_version"] == 1
    assert "key layout v1 is current" in ok(cli("migrate", "--backend", target_redis))


@pytest.mark.sqlite
def test_import_with_bad_lines_imports_nothing_unless_skip_bad(tmp_path: Path) -> None:
    now = time.time()

    def line(name: str, uuid: str, addrs: Any, expires_at: Any = now + 600) -> str:
        return json.dumps({"name": name, "uuid": uuid, "addrs": addrs, "expires_at": expires_at})

    lines = [
        line("good", "u1", ["tcp://127.0.0.1:5001"]),  # 1
        "{not json",  # 2
        line("", "u2", ["tcp://127.0.0.1:5002"]),  # 3: empty name
        line("bad-addr", "u3", ["nonsense"]),  # 4
        "",  # 5: blank lines are fine
        line("gone", "u5", ["tcp://127.0.0.1:5005"], expires_at=now - 10),  # 6: expired
        line("good", "u1", ["tcp://127.0.0.1:5001"]),  # 7: duplicate of line 1
        line("uds", "u8", [["/tmp/tr-x", "uds.sock"]], expires_at="soon"),  # 8
        line("pair", "u9", [["127.0.0.1", 5009]]),  # 9: plain pairs are fine too
    ]
    dump = tmp_path / "bad.jsonl"
    dump.write_text("\n".join(lines) + "\n")
    target = f"sqlite:///{tmp_path}/target.db"

    refused = cli("import", str(dump), "--backend", target)
    line_err = failed(refused)
    assert "5 bad line(s)" in line_err and "line 2, 3, 4, 7, 8" in line_err
    assert "nothing imported" in line_err
    for n in (2, 3, 4, 7, 8):
        assert f"tractor-reg: {dump}:{n}: bad line:" in refused.stderr
    assert "duplicate of line 1" in refused.stderr
    assert not (tmp_path / "target.db").exists()  # the store was not even opened

    skipped = cli("import", str(dump), "--backend", target, "--skip-bad")
    assert ok(skipped).strip() == (
        f"imported 2 entries into {target}; skipped 1 expired and 5 bad line(s)"
    )
    assert f"{dump}:2: skipped:" in skipped.stderr
    assert sorted(e["name"] for e in export_lines(target)) == ["good", "pair"]


def _run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run a command with stderr on a pseudo-terminal; returns (code, stdout, stderr)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*CLI, *args],
            cwd=REPO,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout.decode(), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    now = time.time()
    dump = tmp_path / "many.jsonl"
    dump.write_text(
        "".join(
            json.dumps(
                {
                    "name": f"n{i}",
                    "uuid": f"u{i}",
                    "addrs": [f"tcp://127.0.0.1:{20000 + i}"],
                    "expires_at": now + 600,
                }
            )
            + "\n"
            for i in range(300)
        )
    )
    code, stdout, stderr = _run_on_a_terminal("import", str(dump), "--backend", "memory://")
    assert code == 0, stderr
    assert "imported 300 entries" in stdout
    assert "importing [" in stderr and "300/300 100%" in stderr
    piped = cli("import", str(dump), "--backend", "memory://")
    assert "imported 300 entries" in ok(piped)
    assert piped.stderr == ""  # quiet when stderr is not a terminal
