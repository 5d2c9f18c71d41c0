"""The Redis backends beyond the shared contract: URLs, unix sockets, namespaces, bad input,
change notifications, scripts, Redis Cluster and threads.

Every server is a real ``redis-server`` (:mod:`tests.redis_servers`): the session's own
standalone server (``redis_server``, a namespace of each test's own keeps tests apart) for
plain reads and writes, a server of the test's own where the test breaks or reconfigures
it, and the session's 3-master cluster (``redis_cluster``). Servers that are not Redis
(HTTP, garbage, silence, a Redis too old) are small trio TCP servers in the test. Keys are
inspected and edited by hand with a plain synchronous redis-py client. Waits poll with a
deadline; nothing sleeps to wait for a state. Restarts and outages are in
``test_redis_outage.py``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import msgspec
import pytest
import redis
import trio
import trio.testing

from tests.redis_servers import (
    REDIS_SERVER,
    RedisCluster,
    RedisServer,
    free_port,
    start_standalone,
)
from tractor_reg import (
    BackendError,
    BackendURLError,
    ChangesExpired,
    SchemaError,
    StoreUnavailable,
    TractorRegError,
)
from tractor_reg.backends import AddrTuple, Entry, RegistryBackend, open_backend, opened_backend
from tractor_reg.backends._redis import (
    DEFAULT_NAMESPACE,
    MIN_REDIS_VERSION,
    SCHEMA_VERSION,
    RedisBackend,
    parse_redis_url,
)

from .conftest import churn_history

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

LOGGER = "tractor_reg.backends.redis"
TTL = 600.0
#: Short timeouts so that failures are quick to observe.
FAST = {"connect_timeout": "0.5", "socket_timeout": "0.5"}
MIN_VERSION_TEXT = ".".join(map(str, MIN_REDIS_VERSION))


# -- helpers ---------------------------------------------------------------------------------


def new_ns() -> str:
    return "t" + uuid.uuid4().hex[:16]


def url_of(base: str, **options: object) -> str:
    """``base`` (a server URL without query) with the given query options."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return base + (f"?{query}" if query else "")


def server_url(server: RedisServer, namespace: str, **options: object) -> str:
    return url_of(server.url, namespace=namespace, **options)


def redis_backend(url: str) -> RedisBackend:
    backend = open_backend(url)
    assert isinstance(backend, RedisBackend)
    return backend


def client_for(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)


async def stored(url: str) -> list[Entry]:
    """Every entry a fresh backend on ``url`` reads (what Redis holds for the namespace)."""
    backend = open_backend(url)
    try:
        with trio.fail_after(10):
            await backend.open()
            return await backend.entries()
    finally:
        await backend.aclose()


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    try:
        with trio.fail_after(timeout):
            while not await check():
                await trio.sleep(0.02)
    except trio.TooSlowError:
        pytest.fail(f"timed out after {timeout} s waiting for: {what}")


async def register_some(backend: RegistryBackend, n: int = 3, tag: str = "a") -> list[Entry]:
    return [
        await backend.register((f"{tag}{i}", f"u{i}"), [("127.0.0.1", 20_000 + i)], TTL)
        for i in range(n)
    ]


def uids(entries: list[Entry]) -> list[tuple[str, str]]:
    return [e.uid for e in entries]


@pytest.fixture
def own_servers() -> Iterator[list[RedisServer]]:
    """Servers a test starts for itself; all of them are stopped by PID afterwards."""
    servers: list[RedisServer] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def start_own(servers: list[RedisServer], **kwargs: Any) -> RedisServer:
    server = start_standalone(**kwargs)
    servers.append(server)
    return server


# -- fake servers ------------------------------------------------------------------------------


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _parse_command(buf: bytes) -> tuple[list[bytes], bytes] | None:
    """One RESP command array from ``buf`` and the rest, or None if incomplete."""
    if not buf:
        return None
    if not buf.startswith(b"*"):
        raise ValueError(f"not a RESP array: {buf[:40]!r}")
    line, sep, rest = buf.partition(b"\r\n")
    if not sep:
        return None
    args: list[bytes] = []
    for _ in range(int(line[1:])):
        line, sep, after = rest.partition(b"\r\n")
        if not sep:
            return None
        size = int(line[1:])
        if len(after) < size + 2:
            return None
        args.append(after[:size])
        rest = after[size + 2 :]
    return args, rest


class FakeRedis:
    """Just enough of the Redis protocol to answer what redis-py sends on connect.

    redis-py (RESP3 by default) sends ``HELLO 3``, ``CLIENT MAINT_NOTIFICATIONS``,
    ``CLIENT SETINFO`` twice, ``PING``, then the backend asks ``INFO server``.
    ``knows_hello=False`` answers like Redis < 6.0, which has no ``HELLO``.
    """

    def __init__(self, version: str, *, knows_hello: bool) -> None:
        self.version = version.encode()
        self.knows_hello = knows_hello
        self.commands: list[list[bytes]] = []

    def answer(self, args: list[bytes]) -> bytes:
        cmd = args[0].upper()
        if cmd == b"HELLO" and self.knows_hello:
            return (
                b"%3\r\n+server\r\n+redis\r\n+version\r\n"
                + _bulk(self.version)
                + b"+proto\r\n:3\r\n"
            )
        if cmd == b"PING":
            return b"+PONG\r\n"
        if cmd == b"INFO":
            return _bulk(
                b"# Server\r\nredis_version:" + self.version + b"\r\nredis_mode:standalone\r\n"
            )
        if cmd == b"CLIENT":
            return b"-ERR Unknown subcommand or wrong number of arguments. Try CLIENT HELP\r\n"
        first = args[1][:20] if len(args) > 1 else b""
        return b"-ERR unknown command `%s`, with args beginning with: `%s`, \r\n" % (
            args[0],
            first,
        )

    async def handle(self, stream: trio.SocketStream) -> None:
        buf = b""
        async with stream:
            while True:
                parsed = _parse_command(buf)
                if parsed is None:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        return
                    if not data:
                        return
                    buf += data
                    continue
                args, buf = parsed
                self.commands.append(args)
                try:
                    await stream.send_all(self.answer(args))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def _send_and_close(
    payload: bytes, stream: trio.SocketStream, *, read_first: bool = True
) -> None:
    async with stream:
        try:
            if read_first:
                await stream.receive_some(4096)  # let the client speak first
            await stream.send_all(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _silent(stream: trio.SocketStream) -> None:
    async with stream:
        await trio.sleep_forever()


@asynccontextmanager
async def tcp_server(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """A trio TCP server on a free loopback port for the duration of the block."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        try:
            yield int(listeners[0].socket.getsockname()[1])
        finally:
            nursery.cancel_scope.cancel()


async def open_failure(url: str, timeout: float = 10.0) -> BaseException:
    """Open a backend on ``url`` expecting a failure; return it (closing the backend)."""
    backend = open_backend(url)
    try:
        with trio.fail_after(timeout):
            await backend.open()
    except TractorRegError as exc:
        return exc
    finally:
        await backend.aclose()
    pytest.fail(f"opening {url} succeeded")


# -- 1. URLs ---------------------------------------------------------------------------------


def test_url_standalone_with_credentials_and_db() -> None:
    opts = parse_redis_url("redis://alice:s3cret@127.0.0.1:6390/3")
    assert opts.nodes == (("127.0.0.1", 6390),)
    assert (opts.username, opts.password, opts.db) == ("alice", "s3cret", 3)
    assert not opts.tls and not opts.cluster and opts.unix_path is None
    assert opts.namespace == DEFAULT_NAMESPACE == "tractor_reg"
    assert opts.ssl == {}


def test_url_defaults() -> None:
    opts = parse_redis_url("redis://localhost")
    assert opts.nodes == (("localhost", 6379),)
    assert (opts.username, opts.password, opts.db) == (None, None, 0)
    assert opts.namespace == "tractor_reg"
    assert opts.poll_interval > 0 and opts.connect_timeout > 0 and opts.socket_timeout > 0


def test_url_password_only_and_percent_encoding() -> None:
    opts = parse_redis_url("redis://:p%40ss%3Aw0rd@h:1/0")
    assert opts.username is None
    assert opts.password == "p@ss:w0rd"


def test_url_tls_with_ssl_options() -> None:
    opts = parse_redis_url(
        "rediss://h:6380/1?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem"
        "&ssl_keyfile=/k.pem&ssl_cert_reqs=required"
    )
    assert opts.tls and not opts.cluster
    assert opts.db == 1
    assert opts.ssl == {
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
        "ssl_cert_reqs": "required",
    }
    for reqs in ("optional", "none"):
        assert parse_redis_url(f"rediss://h?ssl_cert_reqs={reqs}").ssl == {"ssl_cert_reqs": reqs}


def test_url_unix_socket_with_db() -> None:
    opts = parse_redis_url("unix:///run/redis/redis.sock?db=4&namespace=ns1")
    assert opts.unix_path == "/run/redis/redis.sock"
    assert opts.db == 4 and opts.namespace == "ns1"
    assert opts.nodes == () and not opts.cluster and not opts.tls


def test_url_cluster_nodes() -> None:
    opts = parse_redis_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002?namespace=x")
    assert opts.cluster and not opts.tls
    assert opts.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert opts.namespace == "x"
    secure = parse_redis_url("rediss+cluster://u:pw@a:1,b:2")
    assert secure.cluster and secure.tls
    assert (secure.username, secure.password) == ("u", "pw")


def test_url_tuning_options() -> None:
    opts = parse_redis_url(
        "redis://h/0?poll_interval=0.25&connect_timeout=1.5&socket_timeout=3&change_retention=5000"
    )
    assert (opts.poll_interval, opts.connect_timeout, opts.socket_timeout) == (0.25, 1.5, 3.0)
    assert opts.change_retention == 5000


@pytest.mark.parametrize("namespace", ["a", "prod.eu-1", "x:y_z", "N" * 100])
def test_url_good_namespaces(namespace: str) -> None:
    assert parse_redis_url(f"redis://h/0?namespace={namespace}").namespace == namespace


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://h:1/0?bogus=1", r"unknown Redis option 'bogus'"),
        ("redis://h:1/0?namespace=a&namespace=b", r"'namespace' given twice"),
        ("redis://h:1/0?poll_interval=1&poll_interval=2", r"'poll_interval' given twice"),
        ("redis://h:1/0?namespace={x}", r"namespace '\{x\}'"),
        ("redis://h:1/0?namespace=ns%7Bx%7D", r"namespace 'ns\{x\}'"),
        ("redis://h:1/0?namespace=", r"namespace ''"),
        ("redis://h:1/0?namespace=a%20b", r"namespace 'a b'"),
        ("redis://h:1/0?namespace=a/b", r"namespace 'a/b'"),
        ("redis://h:1/0?namespace=" + "n" * 101, r"namespace 'n+' must be 1-100"),
        ("redis://h:1/abc", r"database 'abc'.* not a number"),
        ("redis://h:1/-1", r"database '-1'.* not a number"),
        ("unix:///tmp/r.sock?db=x", r"db='x' is not a number"),
        ("redis://h:1/0?db=2", r"unknown Redis option 'db'"),
        ("redis+cluster://a:1,b", r"bad cluster node 'b'"),
        ("redis+cluster://a:1,b:", r"bad cluster node 'b:'"),
        ("redis+cluster://a:1,", r"bad cluster node ''"),
        ("redis+cluster://a:0", r"bad cluster node 'a:0'"),
        ("redis+cluster://a:70000", r"bad cluster node 'a:70000'"),
        ("redis+cluster://a:1/0", r"no database path"),
        ("redis://h:1/0#frag", r"must not have a fragment"),
        ("redis+cluster://a:1,b:2#frag", r"must not have a fragment"),
        ("redis://h:1/0?ssl_ca_certs=/ca.pem", r"unknown Redis option 'ssl_ca_certs'"),
        ("redis://h:1/0?ssl_cert_reqs=none", r"unknown Redis option 'ssl_cert_reqs'"),
        ("unix:///tmp/r.sock?ssl_keyfile=/k", r"unknown Redis option 'ssl_keyfile'"),
        ("rediss://h:1/0?ssl_cert_reqs=maybe", r"ssl_cert_reqs must be"),
        ("rediss://h:1/0?ssl_bogus=1", r"unknown Redis option 'ssl_bogus'"),
        ("redis://h:99999/0", r"malformed Redis URL.*[Pp]ort"),
        ("redis://:1/0", r"names no host"),
        ("unix://relative/redis.sock", r"unix:///abs/path"),
        ("redis://h:1/0?poll_interval=0", r"poll_interval='0' must be > 0"),
        ("redis://h:1/0?poll_interval=nan", r"poll_interval='nan' must be > 0"),
        ("redis://h:1/0?connect_timeout=-1", r"connect_timeout='-1' must be > 0"),
        ("redis://h:1/0?socket_timeout=soon", r"socket_timeout='soon' is not a number"),
        ("redis://h:1/0?change_retention=5", r"change_retention='5' must be an integer"),
        ("redis://h:1/0?a", r"malformed options"),
    ],
)
def test_url_bad_forms(url: str, problem: str) -> None:
    with pytest.raises(BackendURLError, match=problem):
        parse_redis_url(url)
    # open_backend builds the same error, before any I/O.
    with pytest.raises(BackendURLError, match=problem):
        open_backend(url)


def test_url_bad_url_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        open_backend("redis://h:1/0?bogus=1")
    with pytest.raises(BackendURLError):
        parse_redis_url("http://h:1/0")
    with pytest.raises(BackendURLError):
        parse_redis_url(12345)  # type: ignore[arg-type]


def test_open_backend_builds_a_redis_backend_per_scheme() -> None:
    for url, scheme in [
        ("redis://h/0", "redis"),
        ("rediss://h/0", "rediss"),
        ("unix:///tmp/r.sock", "unix"),
        ("redis+cluster://a:1,b:2", "redis+cluster"),
        ("rediss+cluster://a:1", "rediss+cluster"),
    ]:
        backend = open_backend(url)
        assert isinstance(backend, RedisBackend)
        assert isinstance(backend, RegistryBackend)
        assert backend.scheme == scheme


def test_key_layout_carries_hash_tag_and_schema_version() -> None:
    backend = open_backend("redis://h/0?namespace=prod.eu-1")
    assert isinstance(backend, RedisBackend)
    assert SCHEMA_VERSION == 1
    for name, key in backend.keys.items():
        assert key.startswith("tractor_reg:{prod.eu-1}:"), key
        if name != "schema":
            assert ":v1:" in key, key
    assert backend.keys["schema"] == "tractor_reg:{prod.eu-1}:schema"
    assert len(set(backend.keys.values())) == len(backend.keys)
    assert "{prod.eu-1}" in backend.channel and ":v1:" in backend.channel
    default = open_backend("redis://h/0")
    assert isinstance(default, RedisBackend)
    assert all("{tractor_reg}" in key for key in default.keys.values())


async def test_open_writes_schema_version(redis_server: RedisServer) -> None:
    ns = new_ns()
    async with opened_backend(server_url(redis_server, ns)) as backend:
        assert isinstance(backend, RedisBackend)
        await backend.register(("a", "1"), [("127.0.0.1", 1)], TTL)
        with client_for(redis_server.port) as client:
            assert client.get(f"tractor_reg:{{{ns}}}:schema") == b"1"
            namespaced = sorted(k.decode() for k in client.keys(f"tractor_reg:{{{ns}}}:*"))
    assert namespaced, "nothing stored under the namespace"
    for key in namespaced:
        assert key == backend.keys["schema"] or ":v1:" in key, key
        assert key in backend.keys.values(), f"unexpected key {key}"


# -- passwords are never shown -------------------------------------------------------------------

SECRET = "hunter2-Zq9"


def test_redacted_hides_password() -> None:
    for url in (
        f"redis://alice:{SECRET}@h:1/0?namespace=x",
        f"redis://:{SECRET}@h:1/0",
        f"rediss://u:{SECRET}@h:1/0",
        f"redis+cluster://u:{SECRET}@a:1,b:2",
    ):
        opts = parse_redis_url(url)
        assert opts.password == SECRET
        assert SECRET not in opts.redacted()
        assert "***" in opts.redacted()
        backend = open_backend(url)
        assert SECRET not in repr(backend)


def test_redacted_hides_percent_encoded_password() -> None:
    opts = parse_redis_url("redis://u:p%40ss-Zq9@h:1/0")
    assert opts.password == "p@ss-Zq9"
    assert "p%40ss-Zq9" not in opts.redacted()
    assert "p@ss-Zq9" not in opts.redacted()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"redis://u:{SECRET}@h:1/0?poll_interval=0", id="bad-number"),
        pytest.param(f"redis://u:{SECRET}@h:1/0?namespace={{x}}", id="bad-namespace"),
        pytest.param(f"rediss://u:{SECRET}@h:1/0?ssl_cert_reqs=maybe", id="bad-cert-reqs"),
        pytest.param(f"redis://u:{SECRET}@h:1/x", id="bad-db"),
        pytest.param(f"redis://u:{SECRET}@h:1/0?bogus=1", id="unknown-option"),
        pytest.param(f"redis://u:{SECRET}@h:1/0?namespace=a&namespace=b", id="duplicate"),
        pytest.param(f"redis://u:{SECRET}@h:1/0#frag", id="fragment"),
        pytest.param(f"redis://u:{SECRET}@h:99999/0", id="bad-port"),
        pytest.param(f"redis+cluster://u:{SECRET}@a:1,b", id="cluster-node"),
        pytest.param(f"redis://u:{SECRET}@h:1/0?a", id="malformed-query"),
    ],
)
def test_url_errors_do_not_show_the_password(url: str) -> None:
    with pytest.raises(BackendURLError) as info:
        open_backend(url)
    assert SECRET not in str(info.value)


# -- 2. unix socket --------------------------------------------------------------------------------


@pytest.fixture
def unix_redis() -> Iterator[str]:
    """A redis-server listening on a Unix socket only (TCP off); yields the socket path."""
    assert REDIS_SERVER is not None
    directory = tempfile.mkdtemp(prefix="tr-")
    path = os.path.join(directory, "r.sock")
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            "0",
            "--unixsocket",
            path,
            "--unixsocketperm",
            "700",
            "--dir",
            directory,
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            os.path.join(directory, "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(0.5)
                    sock.connect(path)
                    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if b"PONG" in sock.recv(100):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(directory, "redis.log")) as fh:
                    tail = fh.read()[-2000:]
                raise AssertionError(f"redis-server on {path} did not answer PING:\n{tail}")
            time.sleep(0.02)
        yield path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


async def test_unix_socket_register_lookup(unix_redis: str) -> None:
    assert len(unix_redis) < 100
    ns = new_ns()
    url = f"unix://{unix_redis}?namespace={ns}&db=2&connect_timeout=0.5"
    with trio.fail_after(20):
        async with opened_backend(url) as a, opened_backend(url) as b:
            assert isinstance(a, RedisBackend) and a.scheme == "unix"
            entry = await a.register(("svc", "1"), [("127.0.0.1", 4000)], TTL)
            assert await a.lookup("svc") == entry
            await eventually(lambda: _has(b, "svc"), "the second unix backend sees svc")
            assert await b.lookup("svc") == entry
    # db=2 was selected: the key is there and not in db 0.
    with redis.Redis(unix_socket_path=unix_redis, db=2, socket_timeout=5) as client:
        assert client.get(f"tractor_reg:{{{ns}}}:schema") == b"1"
    with redis.Redis(unix_socket_path=unix_redis, db=0, socket_timeout=5) as client0:
        assert client0.get(f"tractor_reg:{{{ns}}}:schema") is None


async def test_unix_socket_missing_path_is_unavailable() -> None:
    directory = tempfile.mkdtemp(prefix="tr-")
    try:
        exc = await open_failure(f"unix://{directory}/nobody.sock?connect_timeout=0.5")
        assert isinstance(exc, StoreUnavailable), exc
    finally:
        os.rmdir(directory)


async def _has(backend: RegistryBackend, name: str) -> bool:
    return await backend.lookup(name) is not None


# -- 3. namespaces ---------------------------------------------------------------------------------


async def test_namespaces_are_isolated(redis_server: RedisServer) -> None:
    ns1, ns2 = new_ns(), new_ns()
    a = redis_backend(server_url(redis_server, ns1))
    b = redis_backend(server_url(redis_server, ns2))
    a2 = redis_backend(server_url(redis_server, ns1))
    try:
        with trio.fail_after(15):
            for backend in (a, b, a2):
                await backend.open()
            ea = await a.register(("svc", "a"), [("127.0.0.1", 5001)], TTL)
            # Same address, other namespace: no eviction across namespaces.
            eb = await b.register(("svc", "b"), [("127.0.0.1", 5001)], TTL)
            for backend in (a, b, a2):
                await backend.poll()
            assert await a.entries() == [ea]
            assert await b.entries() == [eb]
            assert await a2.entries() == [ea]
            assert await a2.lookup("svc") == ea
            assert await b.lookup("svc") == eb
            # Writes in one namespace never reach the other.
            await b.unregister(("svc", "b"))
            await a.poll()
            assert await a.lookup("svc") == ea
    finally:
        for backend in (a, b, a2):
            await backend.aclose()
    assert uids(await stored(server_url(redis_server, ns1))) == [("svc", "a")]
    assert await stored(server_url(redis_server, ns2)) == []


async def test_same_namespace_followers_see_each_other(redis_server: RedisServer) -> None:
    url = server_url(redis_server, new_ns(), poll_interval=0.2)
    other = server_url(redis_server, new_ns(), poll_interval=0.2)
    async with opened_backend(url) as a, opened_backend(url) as b, opened_backend(other) as c:
        entry = await a.register(("svc", "1"), [("127.0.0.1", 5002)], TTL)
        with trio.fail_after(10):
            await b.wait_changed(0)
        assert await b.lookup("svc") == entry
        await b.unregister(("svc", "1"))
        await eventually(lambda: _gone(a, "svc"), "a sees b's unregister")
        assert await c.entries() == []


async def _gone(backend: RegistryBackend, name: str) -> bool:
    return await backend.lookup(name) is None


# -- 4. bad input ----------------------------------------------------------------------------------

RIGHT_PW = "right-Pw-7f3a"
WRONG_PW = "wrong-Pw-9c1e"


@pytest.fixture
def password_server(own_servers: list[RedisServer]) -> RedisServer:
    return start_own(own_servers, password=RIGHT_PW)


async def test_wrong_password(
    password_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns = new_ns()
    good = server_url(password_server, ns, **FAST)
    async with opened_backend(good) as healthy:
        await register_some(healthy)
    before = await stored(good)
    assert len(before) == 3
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for userinfo in (f":{WRONG_PW}", f"default:{WRONG_PW}", f"nobody:{WRONG_PW}"):
        url = url_of(f"redis://{userinfo}@127.0.0.1:{password_server.port}/0", namespace=ns, **FAST)
        exc = await open_failure(url)
        assert isinstance(exc, StoreUnavailable), exc
        assert re.search("auth", str(exc), re.IGNORECASE), str(exc)
        assert WRONG_PW not in str(exc) and RIGHT_PW not in str(exc)
        assert str(password_server.port) in str(exc)
    assert WRONG_PW not in caplog.text and RIGHT_PW not in caplog.text
    assert await stored(good) == before


async def test_missing_password(password_server: RedisServer) -> None:
    ns = new_ns()
    good = server_url(password_server, ns, **FAST)
    async with opened_backend(good) as healthy:
        await register_some(healthy)
    before = await stored(good)
    url = url_of(f"redis://127.0.0.1:{password_server.port}/0", namespace=ns, **FAST)
    exc = await open_failure(url)
    assert isinstance(exc, StoreUnavailable), exc
    assert re.search("auth", str(exc), re.IGNORECASE), str(exc)
    assert RIGHT_PW not in str(exc)
    assert await stored(good) == before


async def test_a_user_without_the_needed_permissions_is_not_authorised(
    password_server: RedisServer,
) -> None:
    """An ACL user that may not run the scripts: a clear StoreUnavailable ("not
    authorised"), not a generic Redis error; the stored registry is untouched."""
    ns = new_ns()
    good = server_url(password_server, ns, **FAST)
    async with opened_backend(good) as healthy:
        await register_some(healthy)
    before = await stored(good)
    with client_for(password_server.port, RIGHT_PW) as client:
        client.execute_command(
            "ACL", "SETUSER", "limited", "on", ">limited-pw", "~*", "&*", "+@all", "-evalsha"
        )
    url = url_of(
        f"redis://limited:limited-pw@127.0.0.1:{password_server.port}/0", namespace=ns, **FAST
    )
    exc = await open_failure(url)
    assert isinstance(exc, StoreUnavailable), exc
    assert "not authorised" in str(exc), str(exc)
    assert "limited-pw" not in str(exc)
    assert await stored(good) == before


async def test_unreachable_host_fails_fast(redis_server: RedisServer) -> None:
    ns = new_ns()
    good = server_url(redis_server, ns)
    async with opened_backend(good) as healthy:
        await register_some(healthy)
    before = await stored(good)
    port = free_port()  # nobody listens here
    url = url_of(f"redis://127.0.0.1:{port}/0", namespace=ns, **FAST)
    started = time.monotonic()
    exc = await open_failure(url, timeout=5)
    assert time.monotonic() - started < 4
    assert isinstance(exc, StoreUnavailable), exc
    assert str(port) in str(exc)
    assert re.search("unreachable|connect", str(exc), re.IGNORECASE), str(exc)
    assert await stored(good) == before


@pytest.mark.parametrize("read_first", [True, False], ids=["answers", "speaks-first"])
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", id="http"),
        pytest.param(b"\x00\x01\x02garbage\xff\xfe\r\n" * 8, id="garbage"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="ssh-banner"),
        pytest.param(b"", id="close-at-once"),
    ],
)
async def test_not_redis_on_the_port(reply: bytes, read_first: bool) -> None:
    async with tcp_server(partial(_send_and_close, reply, read_first=read_first)) as port:
        url = url_of(f"redis://127.0.0.1:{port}/0", namespace=new_ns(), **FAST)
        started = time.monotonic()
        exc = await open_failure(url, timeout=10)
        assert time.monotonic() - started < 5
    assert isinstance(exc, StoreUnavailable), exc
    assert str(port) in str(exc)
    if reply.strip() and read_first:
        assert "does not speak the Redis protocol" in str(exc), str(exc)
    elif reply.strip():
        # It may hang up before the client reads its banner: then all the client can
        # tell is that the connection was lost or reset.
        assert "Redis protocol" in str(exc) or "Connection" in str(exc), str(exc)


async def test_silent_server_times_out() -> None:
    async with tcp_server(_silent) as port:
        url = url_of(f"redis://127.0.0.1:{port}/0", namespace=new_ns(), **FAST)
        started = time.monotonic()
        exc = await open_failure(url, timeout=10)
        assert time.monotonic() - started < 5
    assert isinstance(exc, StoreUnavailable), exc
    assert str(port) in str(exc)


async def test_unknown_option_changes_nothing(redis_server: RedisServer) -> None:
    ns = new_ns()
    good = server_url(redis_server, ns)
    async with opened_backend(good) as healthy:
        await register_some(healthy)
    before = await stored(good)
    with pytest.raises(BackendURLError, match="unknown Redis option 'nmespace'"):
        open_backend(url_of(redis_server.url, nmespace=ns))
    with pytest.raises(BackendURLError, match="unknown Redis option"):
        async with opened_backend(url_of(redis_server.url, namespace=ns, bogus=1)):
            pass
    assert await stored(good) == before


def _entry_json(name: str, uuid_: str, port: int, **changes: object) -> bytes:
    row: dict[str, object] = {
        "name": name,
        "uuid": uuid_,
        "addrs": [["127.0.0.1", port]],
        "revision": 1,
        "registered_at": time.time(),
        "expires_at": time.time() + TTL,
        "registrar": "",
    }
    row.update(changes)
    return msgspec.json.encode(row)


async def test_garbage_entries_are_skipped_and_the_rest_served(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns = new_ns()
    url = server_url(redis_server, ns)
    async with opened_backend(url) as healthy:
        good = await register_some(healthy, 4)
    entries_key = redis_backend(url).keys["entries"]
    with client_for(redis_server.port) as client:
        client.hset(entries_key, '["bad","1"]', b"{not json at all")
        # Valid JSON for another uid than the hash field says.
        client.hset(entries_key, '["evil","1"]', _entry_json("other", "2", 31000))
        # Valid shape but no addresses.
        client.hset(entries_key, '["empty","1"]', _entry_json("empty", "1", 0, addrs=[]))
        # Wrong types.
        client.hset(entries_key, '["typed","1"]', _entry_json("typed", "1", 0, revision="x"))
        client.hset(entries_key, "not-a-uid", _entry_json("x", "1", 31001))

    caplog.set_level(logging.ERROR, logger=LOGGER)
    backend = open_backend(url)
    try:
        with trio.fail_after(10):
            await backend.open()
        assert isinstance(backend, RedisBackend)
        assert await backend.entries() == good
        for entry in good:
            assert await backend.lookup(entry.name) == entry
        for name in ("bad", "evil", "other", "empty", "typed", "x"):
            assert await backend.lookup(name) is None
        assert backend.skipped_rows == 5
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == LOGGER]
        assert len(errors) >= 5, caplog.text
        assert all(ns in r.getMessage() for r in errors), caplog.text
        # The backend still writes, and the garbage rows are left as found.
        extra = await backend.register(("more", "1"), [("127.0.0.1", 31002)], TTL)
        assert extra.revision > max(e.revision for e in good)
    finally:
        await backend.aclose()
    with client_for(redis_server.port) as client:
        assert client.hget(entries_key, '["bad","1"]') == b"{not json at all"
        assert client.hlen(entries_key) == 4 + 5 + 1


@asynccontextmanager
async def writer_and_follower(url: str) -> AsyncIterator[tuple[RegistryBackend, RedisBackend]]:
    """A writer (following in the background) and a follower that only polls when told."""
    async with opened_backend(url) as writer:
        follower = redis_backend(url)
        try:
            with trio.fail_after(15):
                await follower.open()
            yield writer, follower
        finally:
            await follower.aclose()


def append_change(server: RedisServer, follower: RedisBackend, fields: dict[str, Any]) -> None:
    """Append a hand-made row to the change stream, numbered as the next change."""
    keys = follower.keys
    with client_for(server.port) as client:
        seq = int(client.get(keys["seq"]) or 0)
        client.xadd(keys["changes"], {"q": seq + 1, **fields})
        client.set(keys["seq"], seq + 1)


GARBAGE_CHANGE = {"r": "zz", "k": "upsert", "f": "[[", "e": "{", "w": "x"}


async def test_garbage_change_is_skipped_by_followers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server_url(redis_server, new_ns())
    async with writer_and_follower(url) as (writer, follower):
        with trio.fail_after(15):
            first = await writer.register(("a", "1"), [("127.0.0.1", 32000)], TTL)
            await follower.poll()
            assert await follower.entries() == [first]
            append_change(redis_server, follower, GARBAGE_CHANGE)
            caplog.set_level(logging.ERROR, logger=LOGGER)
            await follower.poll()
            assert follower.skipped_rows == 1
            assert "skipping invalid change" in caplog.text
            assert await follower.entries() == [first]
            # Later valid changes still arrive.
            second = await writer.register(("b", "1"), [("127.0.0.1", 32001)], TTL)
            await follower.poll()
            assert await follower.entries() == [first, second]


@pytest.mark.parametrize("where", ["first", "second"])
async def test_a_change_with_a_garbage_number_is_skipped_not_fatal(
    redis_server: RedisServer, where: str
) -> None:
    """A change row whose number (q) was edited into garbage neither breaks polling nor
    loses the writes around it."""
    url = server_url(redis_server, new_ns())
    garbage = {**GARBAGE_CHANGE, "q": "zz", "r": "1"}
    async with writer_and_follower(url) as (writer, follower):
        with trio.fail_after(15):
            first = await writer.register(("a", "1"), [("127.0.0.1", 32100)], TTL)
            await follower.poll()
            expected = [first]
            if where == "second":
                expected.append(await writer.register(("b", "1"), [("127.0.0.1", 32101)], TTL))
            append_change(redis_server, follower, garbage)  # its q overrides the number
            await follower.poll()  # must not raise
            assert await follower.entries() == expected
            # Later valid changes still arrive, and the views agree.
            third = await writer.register(("c", "1"), [("127.0.0.1", 32102)], TTL)
            await follower.poll()
            assert await follower.entries() == [*expected, third]
            assert await follower.entries() == await writer.entries()


@pytest.mark.parametrize("key", ["rev", "seq"])
async def test_garbage_counter_key_is_a_clear_error(redis_server: RedisServer, key: str) -> None:
    ns = new_ns()
    url = server_url(redis_server, ns, **FAST)
    async with opened_backend(url) as healthy:
        await register_some(healthy)
    counter = redis_backend(url).keys[key]
    before = await stored(url)
    with client_for(redis_server.port) as client:
        original = client.get(counter)
        client.set(counter, "garbage")
    try:
        backend = open_backend(url)
        try:
            with trio.fail_after(10):
                await backend.open()
        except TractorRegError:
            pass  # a clear error at open is fine
        else:
            # ... or it opens, and writes fail clearly, every one of them.
            results: list[object] = []

            async def write(i: int) -> None:
                try:
                    results.append(
                        await backend.register((f"w{i}", "1"), [("127.0.0.1", 33000 + i)], TTL)
                    )
                except TractorRegError as exc:
                    results.append(exc)

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for i in range(3):
                        nursery.start_soon(write, i)
            assert all(isinstance(r, Entry | TractorRegError) for r in results), results
        finally:
            await backend.aclose()
    finally:
        with client_for(redis_server.port) as client:
            client.set(counter, original or b"0")
    after = await stored(url)
    assert all(entry in after for entry in before), (before, after)


@pytest.mark.parametrize("key", ["entries", "changes"])
async def test_wrong_type_key_is_a_backend_error(redis_server: RedisServer, key: str) -> None:
    ns = new_ns()
    url = server_url(redis_server, ns, **FAST)
    async with opened_backend(url) as healthy:
        await register_some(healthy)
    target = redis_backend(url).keys[key]
    with client_for(redis_server.port) as client:
        client.rename(target, target + ":saved")
        client.set(target, "garbage")
    try:
        exc = await open_failure(url)
        assert isinstance(exc, BackendError), exc
        assert "WRONGTYPE" in str(exc)
    finally:
        with client_for(redis_server.port) as client:
            client.rename(target + ":saved", target)
    assert len(await stored(url)) == 3


async def test_other_layout_version_is_a_schema_error(redis_server: RedisServer) -> None:
    ns = new_ns()
    url = server_url(redis_server, ns)
    async with opened_backend(url) as healthy:
        await register_some(healthy)
    keys = redis_backend(url).keys
    with client_for(redis_server.port) as client:
        raw_before = client.hgetall(keys["entries"])
        client.set(keys["schema"], "99")
    exc = await open_failure(url)
    assert isinstance(exc, SchemaError), exc
    assert "v99" in str(exc) and f"v{SCHEMA_VERSION}" in str(exc) and ns in str(exc)
    with client_for(redis_server.port) as client:
        assert client.get(keys["schema"]) == b"99"  # left as found
        assert client.hgetall(keys["entries"]) == raw_before
        client.set(keys["schema"], "not-a-version")
    exc = await open_failure(url)
    assert isinstance(exc, SchemaError), exc
    with client_for(redis_server.port) as client:
        client.set(keys["schema"], str(SCHEMA_VERSION))
    assert len(await stored(url)) == 3


async def test_redis_too_old_names_the_minimum_version() -> None:
    # A Redis 6.0: knows HELLO (RESP3) but not the features tractor_reg needs.
    fake = FakeRedis("6.0.9", knows_hello=True)
    async with tcp_server(fake.handle) as port:
        exc = await open_failure(url_of(f"redis://127.0.0.1:{port}/0", **FAST))
    assert isinstance(exc, SchemaError), exc
    assert MIN_VERSION_TEXT == "6.2.0"
    assert "6.2.0" in str(exc) and "6.0.9" in str(exc)
    sent = [cmd[0].upper() for cmd in fake.commands]
    assert b"INFO" in sent
    # Detected before anything is written.
    assert not {b"SET", b"EVALSHA", b"SCRIPT", b"EVAL", b"HSET"} & set(sent), sent


async def test_redis_5_without_hello_names_the_minimum_version() -> None:
    fake = FakeRedis("5.0.14", knows_hello=False)
    async with tcp_server(fake.handle) as port:
        exc = await open_failure(url_of(f"redis://127.0.0.1:{port}/0", **FAST))
    assert isinstance(exc, SchemaError), exc
    assert "6.2.0" in str(exc)


# -- 6. change notifications -----------------------------------------------------------------------


async def test_pubsub_wakes_other_backend_before_its_poll_interval(
    redis_server: RedisServer,
) -> None:
    # With a 30 s poll interval only the notification can explain a quick wake-up.
    url = server_url(redis_server, new_ns(), poll_interval=30)
    async with opened_backend(url) as a, opened_backend(url) as b:
        assert isinstance(b, RedisBackend)
        await eventually(lambda: _healthy(b), "b subscribed")
        for i in range(3):
            seen = await b.revision()
            started = time.monotonic()
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    woke = await nursery.start(wake_on_change, b, seen)
                    entry = await a.register((f"svc{i}", "1"), [("127.0.0.1", 6000 + i)], TTL)
            assert time.monotonic() - started < 10
            assert woke[0] >= entry.revision
            assert await b.lookup(f"svc{i}") == entry


async def wake_on_change(
    backend: RegistryBackend,
    after: int,
    *,
    task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Wait for a change past ``after``; hands over a list that receives the revision."""
    got: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_into, backend, after, got)
        await trio.testing.wait_all_tasks_blocked()
        task_status.started(got)


async def _wait_into(backend: RegistryBackend, after: int, got: list[int]) -> None:
    got.append(await backend.wait_changed(after))


async def _healthy(backend: RegistryBackend) -> bool:
    await trio.lowlevel.checkpoint()
    return bool(getattr(backend, "healthy", False))


# -- 7. scripts ------------------------------------------------------------------------------------


async def test_writes_survive_script_flush(own_servers: list[RedisServer]) -> None:
    server = start_own(own_servers)
    url = server_url(server, new_ns(), **FAST)
    async with opened_backend(url) as a:
        first = await a.register(("a", "1"), [("127.0.0.1", 7000)], TTL)
        for round_ in range(2):
            with client_for(server.port) as client:
                assert client.script_flush() is True
            entry = await a.register((f"b{round_}", "1"), [("127.0.0.1", 7001 + round_)], TTL)
            assert entry.revision > first.revision
            assert await a.renew(("a", "1"), TTL) is not None
            assert await a.unregister((f"b{round_}", "1")) == entry
        # A second backend opened after the flush works too (reads go through scripts).
        with client_for(server.port) as client:
            client.script_flush()
        assert uids(await stored(url)) == [("a", "1")]
        assert await a.lookup("a") is not None


# -- 8. cluster ------------------------------------------------------------------------------------


@pytest.mark.redis_cluster
async def test_cluster_namespace_keys_share_one_slot(redis_cluster: RedisCluster) -> None:
    ns = new_ns()
    url = url_of(redis_cluster.url, namespace=ns)
    async with opened_backend(url) as backend:
        assert isinstance(backend, RedisBackend)
        await register_some(backend)
        keys = list(backend.keys.values())
    with client_for(redis_cluster.servers[0].port) as client:
        slots = {int(client.execute_command("CLUSTER", "KEYSLOT", key)) for key in keys}
        assert len(slots) == 1, slots
        assert slots == {int(client.execute_command("CLUSTER", "KEYSLOT", "{" + ns + "}"))}


@pytest.mark.redis_cluster
async def test_cluster_two_backends_register_lookup_wait(redis_cluster: RedisCluster) -> None:
    url = url_of(redis_cluster.url, namespace=new_ns(), poll_interval=30)
    async with opened_backend(url) as a, opened_backend(url) as b:
        assert isinstance(a, RedisBackend) and a.scheme == "redis+cluster"
        await eventually(lambda: _healthy(b), "b subscribed")
        seen = await b.revision()
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                got = await nursery.start(wake_on_change, b, seen)
                entry = await a.register(("svc", "1"), [("127.0.0.1", 8000)], TTL)
        assert got and got[0] >= entry.revision
        assert await b.lookup("svc") == entry
        moved = await b.register(("svc", "2"), [("127.0.0.1", 8000)], TTL)  # evicts svc.1
        await eventually(lambda: _is(a, "svc", moved), "a sees svc.2 through the cluster")
        assert await a.get(("svc", "1")) is None
    assert uids(await stored(url)) == [("svc", "2")]


async def _is(backend: RegistryBackend, name: str, entry: Entry) -> bool:
    return await backend.lookup(name) == entry


# -- 9. threads ------------------------------------------------------------------------------------


async def test_no_thread_left_behind(redis_server: RedisServer) -> None:
    before = set(threading.enumerate())
    url = server_url(redis_server, new_ns(), poll_interval=0.1)
    async with opened_backend(url) as a, opened_backend(url) as b:
        assert len(set(threading.enumerate()) - before) >= 2
        await a.register(("a", "1"), [("127.0.0.1", 9000)], TTL)
        await eventually(lambda: _has(b, "a"), "b sees a")
    assert set(threading.enumerate()) == before
    # Also after a failed open.
    exc = await open_failure(url_of(f"redis://127.0.0.1:{free_port()}/0", **FAST))
    assert isinstance(exc, StoreUnavailable)
    assert set(threading.enumerate()) == before


@pytest.mark.redis_cluster
async def test_no_thread_left_behind_cluster(redis_cluster: RedisCluster) -> None:
    before = set(threading.enumerate())
    async with opened_backend(url_of(redis_cluster.url, namespace=new_ns())) as backend:
        await backend.register(("a", "1"), [("127.0.0.1", 9001)], TTL)
    assert set(threading.enumerate()) == before


# -- 10. large stores ------------------------------------------------------------------------------

#: Entries of a "large" store: past the size from which a backend loads the hash in pages.
LARGE = 6_000
PAGED_LOG = re.compile(r"loaded in pages; replayed (\d+) changes")
ONE_REPLY_LOG = "loading it in one reply"


def test_large_is_paged() -> None:
    from tractor_reg.backends._redis import _PAGED_LOAD_FROM

    assert LARGE >= _PAGED_LOAD_FROM


def large_uid(i: int) -> tuple[str, str]:
    """Four uuids per name, so per-name order matters."""
    return (f"n{i // 4:05d}", f"u{i % 4}")


def large_addrs(i: int) -> list[AddrTuple]:
    # Two addresses each, so that losing one to an eviction leaves an "updated" entry.
    return [(f"127.0.{i // 60_000}.1", 1024 + i % 60_000), ("/tmp/tr-large", f"{i}.sock")]


async def fill(backend: RegistryBackend, n: int, tasks: int = 40) -> None:
    """Register entries ``0..n-1`` from concurrent tasks (group commit batches them)."""

    async def run(start: int) -> None:
        for i in range(start, n, tasks):
            await backend.register(large_uid(i), large_addrs(i), TTL)

    async with trio.open_nursery() as nursery:
        for start in range(tasks):
            nursery.start_soon(run, start)


async def assert_same_view(reader: RegistryBackend, writer: RegistryBackend) -> None:
    """``reader`` answers every read exactly as ``writer`` does."""
    expected = await writer.entries()
    assert await reader.revision() == await writer.revision()
    assert await reader.count() == await writer.count() == len(expected)
    got = await reader.entries()
    assert len(got) == len(expected)
    assert got == expected  # the same entries, in the same revision order
    for name in sorted({e.name for e in expected}):
        newest_first = await reader.lookup_all(name)
        assert newest_first == await writer.lookup_all(name), name
        revisions = [e.revision for e in newest_first]
        assert revisions == sorted(revisions, reverse=True), name
        assert await reader.lookup(name) == await writer.lookup(name), name
    for entry in expected:
        for addr in entry.addrs:
            assert await reader.owner_of(addr) == entry, addr


def paged_loads(caplog: pytest.LogCaptureFixture) -> list[int]:
    """For each paged load logged so far, how many changes it replayed."""
    found = [PAGED_LOG.search(r.getMessage()) for r in caplog.records if r.name == LOGGER]
    return [int(m.group(1)) for m in found if m]


async def test_large_store_loads_in_pages_in_revision_order(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server_url(redis_server, new_ns())
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with opened_backend(url) as writer:
        with trio.fail_after(60):
            await fill(writer, LARGE)
            # Reshuffle: the oldest uuid of every third name becomes its newest, every
            # fifth name's u1 loses an address (an update keeps its revision and place),
            # every seventh name's u2 is unregistered.
            for i in range(0, LARGE, 12):
                await writer.register(large_uid(i), large_addrs(i), TTL)
            for i in range(1, LARGE, 20):
                await writer.register(("thief", f"t{i}"), [large_addrs(i)[0]], TTL)
            for i in range(2, LARGE, 28):
                assert await writer.unregister(large_uid(i)) is not None
        assert not paged_loads(caplog)
        reader = redis_backend(url)
        try:
            with trio.fail_after(30):
                await reader.open()
                assert paged_loads(caplog) == [0]
                await assert_same_view(reader, writer)
                # Spot checks that do not lean on the writer's view.
                assert (await reader.lookup("n00000")) == await reader.get(("n00000", "u0"))
                first = await reader.lookup_all("n00000")
                assert first[0].uuid == "u0"
                assert sorted(e.uuid for e in first) == ["u0", "u1", "u3"]
                updated = await reader.get(large_uid(1))
                assert updated is not None and updated.addrs == (tuple(large_addrs(1)[1]),)
                assert await reader.get(large_uid(2)) is None
                assert reader.skipped_rows == 0
        finally:
            await reader.aclose()


@asynccontextmanager
async def opened_while_churning(
    url: str, writer: RegistryBackend, tasks: int, seed: int
) -> AsyncIterator[RedisBackend]:
    """A backend opened on ``url`` while ``tasks`` tasks keep changing the store through
    ``writer``; polled once they stopped."""
    reader = redis_backend(url)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            for task in range(tasks):
                nursery.start_soon(churn, writer, stop, seed + task)
            await trio.testing.wait_all_tasks_blocked()
            await reader.open()
            stop.set()
        await reader.poll()
        yield reader
    finally:
        await reader.aclose()


async def churn(backend: RegistryBackend, stop: trio.Event, seed: int) -> None:
    """Keep changing a ``fill``-ed store until ``stop``: re-registrations (an old uid
    becomes its name's newest), new uids of existing names, evictions, unregistrations."""
    rng = random.Random(seed)
    writes = 0
    while not stop.is_set():
        i = rng.randrange(LARGE)
        kind = writes % 4
        if kind == 0:
            await backend.register(large_uid(i), large_addrs(i), TTL)
        elif kind == 1:
            fresh = LARGE + seed * 100_000 + writes
            await backend.register((large_uid(i)[0], f"s{fresh}"), large_addrs(fresh), TTL)
        elif kind == 2:
            stolen = large_addrs(i)[rng.randrange(2)]
            await backend.register(("thief", f"t{seed}-{writes}"), [stolen], TTL)
        else:
            await backend.unregister(large_uid(i))
        writes += 1


async def test_writes_during_a_paged_load_are_not_lost(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server_url(redis_server, new_ns())
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with opened_backend(url) as writer:
        with trio.fail_after(60):
            await fill(writer, LARGE)
        # Which writes land inside a load, and which of them the scan sees, is up to the
        # scheduler: several loads under several writing tasks, each load checked.
        for attempt in range(5):
            start = await writer.revision()
            with trio.fail_after(60):
                async with opened_while_churning(url, writer, 4, attempt * 10) as reader:
                    await assert_same_view(reader, writer)
                    # The history too, deletions of entries the scan missed included.
                    assert await reader.changes_since(start) == await writer.changes_since(start)
    replayed = paged_loads(caplog)
    assert len(replayed) == 5
    assert sum(replayed) > 0, "no write ever landed inside a paged load"


async def test_large_store_skips_invalid_entries_and_loads_the_rest(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns = new_ns()
    url = server_url(redis_server, ns)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with opened_backend(url) as writer:
        with trio.fail_after(60):
            await fill(writer, LARGE)
        entries_key = redis_backend(url).keys["entries"]
        with client_for(redis_server.port) as client:
            client.hset(entries_key, '["bad","1"]', b"{not json at all")
            client.hset(entries_key, '["evil","1"]', _entry_json("other", "2", 31000))
            client.hset(entries_key, '["empty","1"]', _entry_json("empty", "1", 0, addrs=[]))
            client.hset(entries_key, '["typed","1"]', _entry_json("typed", "1", 0, revision="x"))
            client.hset(entries_key, "not-a-uid", _entry_json("x", "1", 31001))
        reader = redis_backend(url)
        try:
            with trio.fail_after(30):
                await reader.open()
                assert paged_loads(caplog) == [0]
                assert reader.skipped_rows == 5
                errors = [r for r in caplog.records if r.levelno == logging.ERROR]
                assert len(errors) == 5, caplog.text
                assert all(ns in r.getMessage() for r in errors), caplog.text
                await assert_same_view(reader, writer)
                for name in ("bad", "evil", "other", "empty", "typed", "x"):
                    assert await reader.lookup(name) is None
        finally:
            await reader.aclose()


@pytest.mark.redis_cluster
async def test_cluster_large_store_loads_in_pages(
    redis_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    url = url_of(redis_cluster.url, namespace=new_ns())
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with opened_backend(url) as writer:
        with trio.fail_after(90):
            await fill(writer, LARGE)
        reader = redis_backend(url)
        try:
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    stop = trio.Event()
                    for task in range(2):
                        nursery.start_soon(churn, writer, stop, task)
                    await trio.testing.wait_all_tasks_blocked()
                    await reader.open()
                    stop.set()
                assert len(paged_loads(caplog)) == 1
                await reader.poll()
                await assert_same_view(reader, writer)
        finally:
            await reader.aclose()


async def test_paged_load_outrun_by_writers_falls_back_to_one_reply(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The smallest change stream, and writes in batches of hundreds of rows: a load
    # that has to replay them finds the stream trimmed past where its scan began.
    url = server_url(redis_server, new_ns(), change_retention=1000)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with opened_backend(url) as writer:
        with trio.fail_after(60):
            await fill(writer, LARGE)
        for attempt in range(10):
            with trio.fail_after(60):
                async with opened_while_churning(url, writer, 600, attempt * 1000) as reader:
                    await assert_same_view(reader, writer)
            if ONE_REPLY_LOG in caplog.text:
                break
    assert ONE_REPLY_LOG in caplog.text, "no load was ever outrun by the writers"


# -- change history across a restart ------------------------------------------------------------


async def test_a_reloaded_namespace_keeps_the_change_history(redis_server: RedisServer) -> None:
    """A registrar restarted on a namespace serves the changes its predecessor did, from
    revision 0, with the addresses of unregistered actors."""
    url = server_url(redis_server, new_ns())
    with trio.fail_after(20):
        async with opened_backend(url) as first:
            await churn_history(first, lambda i: ("127.0.0.1", 33000 + i))
            await fill(first, 2_500)  # more rows than one page of the history read
            live = await first.changes_since(0, limit=100_000)
            revision = await first.revision()
        assert {c.kind for c in live} == {"registered", "updated", "unregistered"}
        assert all(c.addrs for c in live)
        async with opened_backend(url) as second:
            assert await second.changes_since(0, limit=100_000) == live
            middle = live[len(live) // 2].revision
            assert await second.changes_since(middle, limit=100_000) == [
                c for c in live if c.revision > middle
            ]
            entry = await second.register(("later", "l"), [("127.0.0.1", 33100)], TTL)
            assert (await second.changes_since(revision))[-1].revision == entry.revision


async def test_history_after_trimming_starts_where_the_stream_does(
    redis_server: RedisServer,
) -> None:
    url = server_url(redis_server, new_ns(), change_retention=1000)
    with trio.fail_after(60):
        async with opened_backend(url) as first:
            for i in range(1600):
                await first.register(("bulk", f"u{i % 50}"), [("127.0.0.1", 34000 + i)], TTL)
            revision = await first.revision()
            live = await first.changes_since(revision - 40)
        async with opened_backend(url) as second:
            with pytest.raises(ChangesExpired):
                await second.changes_since(0)
            assert await second.changes_since(revision - 40) == live
            assert await second.revision() == revision


async def test_a_garbage_stream_row_restarts_the_history_after_it(
    redis_server: RedisServer,
) -> None:
    ns = new_ns()
    url = server_url(redis_server, ns)
    with trio.fail_after(20):
        async with opened_backend(url) as first:
            await churn_history(first, lambda i: ("127.0.0.1", 35000 + i))
            assert isinstance(first, RedisBackend)
            keys = first.keys
            live = await first.changes_since(0)
            entries = await first.entries()
        broken = live[2].revision
        with client_for(redis_server.port) as client:
            rows = client.xrange(keys["changes"])
            victim = next(rid for rid, fields in rows if int(fields[b"r"]) == broken)
            # Rewrite the stream with the same ids (XADD cannot insert before the top).
            client.delete(keys["changes"])
            for rid, fields in rows:
                if rid == victim:
                    fields = {**fields, b"e": b"{not json"}
                client.xadd(keys["changes"], fields, id=rid)
        async with opened_backend(url) as second:
            with pytest.raises(ChangesExpired):
                await second.changes_since(broken - 1)
            assert await second.changes_since(broken) == [c for c in live if c.revision > broken]
            assert await second.entries() == entries  # the table itself is unaffected


@pytest.mark.parametrize("size", [1_000, LARGE], ids=["one-reply", "paged"])
async def test_a_store_rolled_back_to_an_older_copy_expires_the_watchers_between(
    redis_server: RedisServer, size: int
) -> None:
    """Redis back with an older copy (a restored snapshot, a lagging replica): a watcher
    positioned between the store's revision and the view's must learn that its
    history is gone (ChangesExpired), whichever way the namespace is reloaded."""
    url = server_url(redis_server, new_ns())
    with trio.fail_after(90):
        async with opened_backend(url) as backend:
            assert isinstance(backend, RedisBackend)
            await fill(backend, size)
            old = await backend.revision()
            with client_for(redis_server.port) as client:
                saved = {k: client.dump(k) for k in backend.keys.values() if client.exists(k)}
            for i in range(50):
                await backend.register(("later", f"l{i}"), [("127.0.0.1", 36000 + i)], TTL)
            with client_for(redis_server.port) as client:
                for key, value in saved.items():
                    client.restore(key, 0, value, replace=True)
            await backend.poll()  # the store is behind: a reload
            assert await backend.get(("later", "l30")) is None
            with pytest.raises(ChangesExpired):
                await backend.changes_since(old + 20)
