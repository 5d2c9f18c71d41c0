"""Start helper OS processes for tests and make sure they are gone afterwards."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import tractor_reg

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
