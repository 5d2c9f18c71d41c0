"""Run every program in ``examples/`` as a real process, the way a user would.

Each program gets a free TCP port or a short temporary directory, runs in its own
process group, and is waited for by what it prints, always under a deadline. Every
process an example starts (including the child actors it spawns, which live in sessions
of their own) carries a tag in its environment; whatever the test did, every tagged
process is killed at the end, and a test whose programs left one behind fails.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MULTI = EXAMPLES / "multi_program"

#: Environment variable that marks every process started on behalf of one test.
TAG_VAR = "TRACTOR_REG_EXAMPLE_TEST_TAG"
#: Deadline for one example program to run to completion, or to print an awaited line.
DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tagged_pids(tag: str) -> list[int]:
    """Every live process whose environment carries ``tag`` (zombies have none)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


class Program:
    """One example program running as a subprocess in its own process group."""

    def __init__(self, args: list[str | Path], env: dict[str, str]) -> None:
        self.args = [str(a) for a in args]
        # A file, not a pipe: nothing has to drain it, and a hung child cannot block on it.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        with stdout:
            for raw in stdout:
                line = raw.rstrip("\n")
                self.lines.append(line)
                self._queue.put(line)
        self._queue.put(None)

    def stderr_tail(self, size: int = 3000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-size:]

    def describe(self) -> str:
        name = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(self.args))
        return (
            f"{name} (exit code {self.proc.poll()})\n"
            f"--- stdout ---\n" + "\n".join(self.lines) + "\n"
            f"--- stderr tail ---\n{self.stderr_tail()}"
        )

    def wait_for_line(self, prefix: str, timeout: float = DEADLINE) -> str:
        """The first stdout line starting with ``prefix``; fails with context at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {prefix!r} line within {timeout}s from {self.describe()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"stdout closed before a {prefix!r} line from {self.describe()}")
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = DEADLINE) -> int:
        """Wait for the program to exit; return its exit code (fails at the deadline)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"did not exit within {timeout}s: {self.describe()}")
        # EOF follows the exit unless a process it started still holds our stdout pipe.
        self._reader.join(timeout=5.0)
        if self._reader.is_alive():
            pytest.fail(f"exited, but a process it started holds its stdout: {self.describe()}")
        return code

    def expect_success(self, timeout: float = DEADLINE) -> list[str]:
        code = self.finish(timeout)
        assert code == 0, self.describe()
        assert self.lines and self.lines[-1] == "OK", self.describe()
        return self.lines

    def stop(self, signum: int, timeout: float = DEADLINE) -> int:
        """Send ``signum`` to the program (not its group) and wait for it to exit."""
        self.proc.send_signal(signum)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=5)
        self._stderr.close()


#: ``launch(script, *args, env=None)`` -> a running :class:`Program`.
Launch = Callable[..., "Program"]


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """A private, short ``$XDG_RUNTIME_DIR``: child actors put their UDS sockets in it."""
    path = tempfile.mkdtemp(prefix="tr-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def launch(runtime_dir: str) -> Iterator[Launch]:
    """``launch(script, *args, env={...})`` starts an example; everything is killed after."""
    tag = uuid.uuid4().hex
    programs: list[Program] = []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACTOR_REG_")}
    base_env.update({TAG_VAR: tag, "XDG_RUNTIME_DIR": runtime_dir, "PYTHONUNBUFFERED": "1"})

    def _launch(script: Path, *args: str, env: dict[str, str] | None = None) -> Program:
        program = Program([script, *args], {**base_env, **(env or {})})
        programs.append(program)
        return program

    abandoned = False
    try:
        yield _launch
    finally:
        # Anything still tagged now (a hung example, or child actors it left behind) is
        # killed; its pids are collected first because a dead parent's children are
        # re-parented and no longer in its process group.
        leftover = tagged_pids(tag)
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for program in programs:
            abandoned = abandoned or program.proc.poll() is None
            program.kill()
        sockets = [str(p) for p in Path(runtime_dir).rglob("*") if p.is_socket()]
    if leftover and not abandoned:
        pytest.fail(f"examples left processes behind: {sorted(leftover)}")
    if sockets and not abandoned:
        pytest.fail(f"examples left UDS socket files behind: {sockets}")


# -- examples/service_daemon_discovery.py ---------------------------------------------------


@pytest.mark.parametrize("how", ["argv", "env"])
def test_service_daemon_discovery(launch: Launch, how: str) -> None:
    registry = f"tcp://127.0.0.1:{free_port()}"
    script = EXAMPLES / "service_daemon_discovery.py"
    if how == "argv":
        program = launch(script, registry)
    else:
        program = launch(script, env={"TRACTOR_REG_REGISTRY_ADDRS": registry})
    out = "\n".join(program.expect_success())
    assert f"is the registrar at ['{registry}']" in out
    assert "wait_for_actor -> {'sym': 'ACME', 'price': 101.25, 'served_by': 'quote_svc'}" in out
    assert "find_actor -> {'sym': 'INITECH', 'price': 12.5, 'served_by': 'quote_svc'}" in out
    assert "query_actor -> tcp://127.0.0.1:" in out
    assert "find_actor('no_such_service') -> None" in out
    assert "find_actor from another actor -> {'sym': 'GLOBEX', 'price': 88.0," in out
    assert "remote error -> KeyError:" in out


# -- examples/uds_only_tree.py --------------------------------------------------------------


def test_uds_only_tree(launch: Launch) -> None:
    directory = tempfile.mkdtemp(prefix="tr-")
    try:
        program = launch(EXAMPLES / "uds_only_tree.py", directory)
        out = "\n".join(program.expect_success())
        assert f"root listens on ['uds://{directory}/registry.sock']" in out
        assert "counter is at uds://" in out
        assert "counter accepts on ['uds']" in out
        assert "bump from root -> 1" in out
        assert "bump from sibling -> 11" in out
        assert os.listdir(directory) == []
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_uds_only_tree_default_dir(launch: Launch) -> None:
    program = launch(EXAMPLES / "uds_only_tree.py")
    out = "\n".join(program.expect_success())
    assert "bump from sibling -> 11" in out


# -- examples/multi_program/ ----------------------------------------------------------------


def test_multi_program(launch: Launch) -> None:
    registry = f"tcp://127.0.0.1:{free_port()}"
    registrar = launch(MULTI / "registrar.py", registry)
    assert registrar.wait_for_line("READY") == f"READY {registry}"

    service = launch(MULTI / "service.py", registry)
    service.wait_for_line("READY")

    client = launch(MULTI / "client.py", registry)
    out = "\n".join(client.expect_success())
    assert "wait_for_actor -> quote_svc" in out
    assert "ACME: 101.25 (served by quote_svc pid " in out
    assert "GLOBEX: 88.0 (served by quote_svc pid " in out
    assert "registry: ['quote_client', 'quote_svc', 'registrar', 'service_host']" in out

    # A second client finds the same service through the same registrar.
    again = launch(MULTI / "client.py", env={"TRACTOR_REG_REGISTRY_ADDRS": registry})
    assert "ACME: 101.25 (served by quote_svc pid " in "\n".join(again.expect_success())

    assert service.stop(signal.SIGTERM) == 0, service.describe()
    assert service.lines[-1] == "service host stopped", service.describe()

    assert registrar.stop(signal.SIGTERM) == 0, registrar.describe()
    assert registrar.lines[-2:] == ["got SIGTERM, shutting down", "registrar stopped"]


def test_registrar_refuses_a_second_registrar_and_stops_on_ctrl_c(launch: Launch) -> None:
    registry = f"tcp://127.0.0.1:{free_port()}"
    registrar = launch(MULTI / "registrar.py", registry)
    registrar.wait_for_line("READY")

    # ensure_registry=True: a second registrar at the same address must not start.
    second = launch(MULTI / "registrar.py", registry)
    assert second.finish() != 0, second.describe()
    assert "ensure_registry=True but a registrar already answers" in second.stderr_tail()

    assert registrar.stop(signal.SIGINT) == 0, registrar.describe()
    assert registrar.lines[-1] == "registrar stopped"


def test_client_without_registrar_says_so(launch: Launch) -> None:
    registry = f"tcp://127.0.0.1:{free_port()}"
    client = launch(MULTI / "client.py", registry)
    assert client.finish() != 0, client.describe()
    assert "no registrar is running at" in client.stderr_tail()
