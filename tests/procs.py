"""Start helper OS processes for tests and make sure they are gone afterwards; start
registrar processes over a shared store and ask them what they know."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import tractor_reg
from tests.conftest import free_port
from tests.rpc_targets.hostile import RawPeer, client

T = TypeVar("T")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Proc:
    """A child process in its own process group, with line-oriented stdout reading."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=REPO,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._partial = b""
        self._eof = False
        self._stderr_chunks: list[bytes] = []
        # Drain stderr all the time: a chatty child must never block on a full pipe.
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()

    def _drain_stderr(self) -> None:
        stream = self.popen.stderr
        assert stream is not None
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                return
            self._stderr_chunks.append(chunk)
            if len(self._stderr_chunks) > 256:
                del self._stderr_chunks[:128]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stderr_tail(self, limit: int = 3000) -> str:
        if self.popen.poll() is not None:
            self._stderr_reader.join(timeout=2)
        return b"".join(self._stderr_chunks).decode("utf-8", "replace")[-limit:]

    def wait_line(self, prefix: str, timeout: float = 20.0) -> str:
        """The first stdout line starting with ``prefix``; fails after ``timeout`` seconds."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout.fileno()
        while True:
            for line in self.lines:
                if line.startswith(prefix):
                    self.lines.remove(line)
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                raise AssertionError(
                    f"{self.argv} did not print {prefix!r} within {timeout}s "
                    f"(exit code {self.popen.poll()}); stdout so far {self.lines!r}; "
                    f"stderr tail:\n{self.stderr_tail()}"
                )
            if _readable(fd, min(left, 0.5)):
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._eof = True
                    chunk = b"\n" if self._partial else b""
                self._partial += chunk
                *complete, self._partial = self._partial.split(b"\n")
                self.lines.extend(c.decode("utf-8", "replace") for c in complete)

    async def await_line(self, prefix: str, timeout: float = 20.0) -> str:
        """:meth:`wait_line` without blocking the trio loop (for in-process registrars)."""
        import trio

        return await trio.to_thread.run_sync(self.wait_line, prefix, timeout)

    async def await_exit(self, timeout: float = 20.0) -> int:
        import trio

        return await trio.to_thread.run_sync(self.wait, timeout)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{self.argv} did not exit within {timeout}s; stderr:\n{self.stderr_tail()}"
            ) from exc

    def kill_group(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()
        self._stderr_reader.join(timeout=2)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


def _readable(fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


@contextmanager
def spawn(argv: Sequence[str], env: dict[str, str] | None = None) -> Iterator[Proc]:
    proc = Proc(argv, env)
    try:
        yield proc
    finally:
        proc.kill_group()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def registrar_argv(*addrs: str, extra: Sequence[str] = ()) -> list[str]:
    """``tractor-reg serve`` on the given ``tcp://``/``uds://`` addresses."""
    argv = python("-m", "tractor_reg", "serve", "--log-level", "warning")
    for addr in addrs:
        argv += ["--listen", addr]
    if "--backend" not in extra:
        argv += ["--backend", "memory://"]  # never the daemon's default state file
    return argv + list(extra)


def joiner_argv(
    name: str, *reg_addrs: str, ttl: float = 30.0, renew: float | None = None
) -> list[str]:
    """A root actor called ``name`` that joins the registry and serves until killed."""
    argv = python("-m", "tests.rpc_targets.joiner", name, "--ttl", str(ttl))
    if renew is not None:
        argv += ["--renew", str(renew)]
    for addr in reg_addrs:
        argv += ["--registry", addr]
    return argv


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still alive after {timeout}s")
        time.sleep(0.02)


def wait_ready(proc: Proc, timeout: float = 15.0) -> str:
    """A registrar's READY line; if it died first, the failure shows why."""
    try:
        return proc.wait_line("READY", timeout=timeout)
    except AssertionError as exc:
        try:
            proc.popen.wait(5)  # reap it, so that its whole stderr can be read
        except subprocess.TimeoutExpired:
            pass
        raise AssertionError(
            f"registrar {proc.argv[-8:]} did not come up (exit code {proc.popen.poll()}); "
            f"stderr tail:\n{proc.stderr_tail()}"
        ) from exc


def parse_joiner(line: str) -> tuple[str, list[list[Any]]]:
    """uuid and wire-form TCP addresses from a joiner's ``READY uuid addr...`` line."""
    _, uuid, *addrs = line.split()
    wire: list[list[Any]] = []
    for text in addrs:
        addr = tractor_reg.parse_address(text)
        assert isinstance(addr, tractor_reg.TCPAddress), text
        wire.append([addr.host, addr.port])
    return uuid, wire


def joiner_ready(proc: Proc) -> tuple[str, list[list[Any]]]:
    """The joiner's uuid and its addresses (wire form) from its READY line."""
    return parse_joiner(proc.wait_line("READY", timeout=15))


async def await_joiner(proc: Proc) -> tuple[str, list[list[Any]]]:
    """:func:`joiner_ready` without blocking the trio loop (an in-test root is running)."""
    return parse_joiner(await proc.await_line("READY", timeout=15))


def stderr_tails(procs: tuple[Proc, ...], limit: int = 1500) -> str:
    return "".join(
        f"\n--- {' '.join(p.argv[2:5])} (exit code {p.popen.poll()}); stderr tail:\n"
        f"{p.stderr_tail(limit)}"
        for p in procs
    )


async def eventually(
    what: str,
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    timeout: float,
    *procs: Proc,
) -> T:
    """Poll ``probe`` until ``ok(result)``; fail after ``timeout`` naming ``what``, with
    the last result and the stderr tail of each of ``procs``."""
    import trio

    deadline = trio.current_time() + timeout
    while True:
        last = await probe()
        if ok(last):
            return last
        if trio.current_time() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout}s; last seen {last!r}{stderr_tails(procs)}"
            )
        await trio.sleep(0.02)


async def always(
    what: str,
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    window: float,
    *procs: Proc,
) -> int:
    """Check ``ok(probe())`` again and again for ``window`` seconds; fail on the first miss.

    A bounded observation window (the property must hold throughout), not a wait for
    state. Returns how many observations were made.
    """
    import trio

    start = trio.current_time()
    seen = 0
    while trio.current_time() < start + window:
        last = await probe()
        seen += 1
        if not ok(last):
            raise AssertionError(
                f"{what}: broken {trio.current_time() - start:.2f}s into a {window}s window "
                f"(observation {seen}); saw {last!r}{stderr_tails(procs)}"
            )
        await trio.sleep(0.05)
    return seen


def equals(want: object) -> Callable[[object], bool]:
    return lambda got: got == want


# -- registrars over a shared store ---------------------------------------------------------

#: The registrars' own lease (they register in the store they serve, like any actor). Long
#: by default: a registrar's own renewals are writes, which would bring its view up to date
#: as a side effect and hide how it follows the other registrar's writes.
REGISTRAR_TTL = 60.0
#: How often a SQLite registrar re-reads the file: another process's write is visible
#: within about this long (s).
SQLITE_POLL = 0.05


def sqlite_url(db: Path, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"poll_interval": str(SQLITE_POLL), **options}.items())
    return f"sqlite:///{db}?{query}"  # db is absolute: sqlite:////abs/path.db


def integrity(db: Path) -> str:
    """SQLite's own ``PRAGMA integrity_check`` of the file (``"ok"`` when sound)."""
    conn = sqlite3.connect(db)
    try:
        return ";".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def new_addr() -> tractor_reg.TCPAddress:
    return tractor_reg.TCPAddress("127.0.0.1", free_port())


def serve_argv(
    url: str, addr: tractor_reg.TCPAddress, lease_ttl: float = REGISTRAR_TTL
) -> list[str]:
    """A registrar named ``reg`` serving ``addr`` over the store at ``url``."""
    return registrar_argv(
        str(addr), extra=["--backend", url, "--lease-ttl", str(lease_ttl), "--name", "reg"]
    )


@contextmanager
def registrars(
    url: str, count: int = 2, lease_ttl: float = REGISTRAR_TTL
) -> Iterator[list[tuple[tractor_reg.TCPAddress, Proc]]]:
    """``count`` registrars on different ports over one store, up (READY) when yielded."""
    addrs = [new_addr() for _ in range(count)]
    with ExitStack() as stack:
        procs = [stack.enter_context(spawn(serve_argv(url, a, lease_ttl))) for a in addrs]
        for proc in procs:
            wait_ready(proc)
        yield list(zip(addrs, procs, strict=True))


# -- asking the registrars ------------------------------------------------------------------


@asynccontextmanager
async def reader(addr: tractor_reg.TCPAddress, tag: str) -> AsyncIterator[RawPeer]:
    """A raw client of the registrar at ``addr`` (its uid is never registered)."""
    async with client(addr, "reader", f"reader-{tag}-{os.getpid()}") as peer:
        yield peer


async def ask(reg: tractor_reg.TCPAddress, func: str, **kwargs: Any) -> Any:
    """Call a registrar endpoint from the in-test root."""
    async with tractor_reg.get_registry(reg) as portal:
        return await portal.run_from_ns("self", func, **kwargs)


def uids_in(table: dict[str, Any], *, registrars: bool = False) -> set[tuple[str, str]]:
    """``(name, uuid)`` of a ``get_registry`` table (registrar entries left out unless asked)."""
    found = [key.split(".", 1) for key in table]
    return {(n, u) for n, u in found if registrars or n != "reg"}


def uids_of(entries: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """``(name, uuid)`` of ``list_entries`` (registrar entries left out)."""
    return {(e["name"], e["uuid"]) for e in entries if e["name"] != "reg"}


def check_integrity(entries: list[dict[str, Any]]) -> None:
    """No uid twice, no address owned by two entries, no entry without an address."""
    uids = [(e["name"], e["uuid"]) for e in entries]
    assert len(uids) == len(set(uids)), f"a uid is listed twice: {uids}"
    owners: dict[tuple[Any, ...], tuple[str, str]] = {}
    for e in entries:
        assert e["addrs"], f"entry without an address: {e}"
        for addr in e["addrs"]:
            key = tuple(addr)
            assert key not in owners, f"{key} is owned by {owners[key]} and {e['name']}.{e['uuid']}"
            owners[key] = (e["name"], e["uuid"])


def view_of(entries: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """What must agree between two registrars' views (renewals only move expires_at)."""
    return {(e["name"], e["uuid"], e["revision"], repr(e["addrs"])) for e in entries}
