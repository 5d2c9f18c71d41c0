"""Real redis-server processes for tests: standalone servers and a 3-master cluster.

Each server runs on a free loopback port with its own directory, in its own process
group, and is stopped by PID. Waits are by what the server answers (PING, CLUSTER
INFO), each with a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

#: PIDs of servers that outlive one test (session fixtures); the leftover check skips them.
LONG_LIVED: set[int] = set()

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, password: str | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        if password:
            cmd = f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode()
            sock.sendall(cmd)
            sock.recv(100)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(100)


@dataclass
class RedisServer:
    """One redis-server process."""

    port: int
    directory: str
    extra: Sequence[str] = ()
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    owns_dir: bool = field(default=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start_without_ping(self) -> RedisServer:
        """Start the process without waiting (e.g. a TLS-only server; see :meth:`wait_tls`)."""
        assert REDIS_SERVER, "redis-server is not installed"
        self.log_path = os.path.join(self.directory, f"redis-{self.port}-{os.getpid()}.log")
        argv = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.directory,
            "--save", "",
            "--appendonly", "no",
            "--logfile", self.log_path,
            *self.extra,
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start and wait until the server answers PING."""
        self.start_without_ping()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if b"PONG" in _ping(self.port, self.password):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"redis-server on {self.port} did not answer PING (exit {self.proc.poll()}); "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def wait_tls(self, port: int, ca: str, timeout: float = 10.0) -> None:
        """Wait until ``redis-cli --tls`` gets PONG on ``port``."""
        assert REDIS_CLI and self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                [REDIS_CLI, "--tls", "--cacert", ca, "-p", str(port), "ping"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            if "PONG" in out:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"TLS redis-server on {port} not ready:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        try:
            with open(self.log_path) as fh:
                return fh.read()[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        self.kill()
        if self.owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_standalone(
    extra: Sequence[str] = (),
    password: str | None = None,
    port: int | None = None,
    directory: str | None = None,
) -> RedisServer:
    owns = directory is None
    server = RedisServer(
        port=port or free_port(),
        directory=directory or tempfile.mkdtemp(prefix="tr-redis-"),
        extra=extra,
        password=password,
        owns_dir=owns,
    )
    return server.start()


@contextmanager
def redis_server(extra: Sequence[str] = ()) -> Iterator[RedisServer]:
    """A redis-server of this test's own; ``server.kill()`` + ``server.start()`` restarts it
    on the same port and directory (with its data only if ``extra`` makes it persistent)."""
    server = start_standalone(extra=extra)
    try:
        yield server
    finally:
        server.stop()


#: How often a registrar re-reads the change stream when no notification arrives (s).
POLL = 0.2


def redis_url(server: RedisServer, namespace: str, **options: str) -> str:
    """A registrar's URL for ``namespace`` on ``server``: a short poll, and short timeouts
    so that an outage is noticed (and answered) quickly."""
    defaults = {"poll_interval": str(POLL), "connect_timeout": "0.5", "socket_timeout": "0.5"}
    query = "&".join(f"{k}={v}" for k, v in {"namespace": namespace, **defaults, **options}.items())
    return f"redis://127.0.0.1:{server.port}/0?{query}"


@dataclass
class RedisCluster:
    servers: list[RedisServer]
    directory: str

    @property
    def nodes(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    @property
    def url(self) -> str:
        return f"redis+cluster://{self.nodes}"

    def stop(self) -> None:
        for server in self.servers:
            server.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(masters: int = 3, timeout: float = 30.0) -> RedisCluster:
    assert REDIS_CLI, "redis-cli is not installed"
    directory = tempfile.mkdtemp(prefix="tr-cluster-")
    servers: list[RedisServer] = []
    ready = False
    try:
        for _ in range(masters):
            port = free_port()
            servers.append(
                RedisServer(
                    port=port,
                    directory=directory,
                    extra=[
                        "--cluster-enabled",
                        "yes",
                        # explicit bus port: the default (port + 10000) may not exist
                        "--cluster-port",
                        str(free_port()),
                        "--cluster-config-file",
                        os.path.join(directory, f"nodes-{port}.conf"),
                        "--cluster-node-timeout",
                        "2000",
                    ],
                ).start()
            )
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *[f"127.0.0.1:{s.port}" for s in servers],
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        for server in servers:
            while True:
                info = subprocess.run(
                    [REDIS_CLI, "-p", str(server.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                if "cluster_state:ok" in info:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"cluster not ok on {server.port}:\n{info}")
                time.sleep(0.05)
        ready = True
    finally:
        if not ready:  # stop what was started; the error propagates
            for server in servers:
                server.kill()
            shutil.rmtree(directory, ignore_errors=True)
    return RedisCluster(servers, directory)
