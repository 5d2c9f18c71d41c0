"""Redis outages under a redis backend: lookups from the last view, fast-failing writes,
and convergence when Redis comes back with its data or empty.

Every test starts its own ``redis-server`` (never the shared ones), kills it with SIGKILL
as a crash would, and restarts it on the same port and directory. Backends run through
``opened_backend`` so that ``run()`` follows pub/sub and reconnects. Waits poll for a
condition with a deadline; nothing sleeps to wait for a state.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.redis_servers import REDIS_SERVER, RedisServer, start_standalone
from tractor_reg import StoreUnavailable
from tractor_reg.backends import Entry, RegistryBackend, open_backend, opened_backend
from tractor_reg.backends._redis import RedisBackend

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

LOGGER = "tractor_reg.backends.redis"
TTL = 600.0
CONNECT_TIMEOUT = 0.5
#: Redis with every write on disk before it is acknowledged.
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    """Every redis-server the test starts; all are stopped by PID afterwards."""
    started: list[RedisServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.kill()
        if started:
            started[0].stop()  # removes the directory the restarts shared


def start(servers: list[RedisServer], **kwargs: Any) -> RedisServer:
    server = start_standalone(**kwargs)
    servers.append(server)
    return server


def restart(servers: list[RedisServer], old: RedisServer) -> RedisServer:
    """A new redis-server on ``old``'s port and directory, with its settings."""
    server = start_standalone(
        extra=old.extra, password=old.password, port=old.port, directory=old.directory
    )
    servers.append(server)
    return server


def url_for(server: RedisServer, namespace: str, poll_interval: float = 0.1) -> str:
    return (
        f"{server.url}?namespace={namespace}&poll_interval={poll_interval}"
        f"&connect_timeout={CONNECT_TIMEOUT}&socket_timeout={CONNECT_TIMEOUT}"
    )


def new_ns() -> str:
    return "o" + uuid.uuid4().hex[:16]


def as_redis(backend: RegistryBackend) -> RedisBackend:
    assert isinstance(backend, RedisBackend)
    return backend


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0
) -> None:
    try:
        with trio.fail_after(timeout):
            while not await check():
                await trio.sleep(0.02)
    except trio.TooSlowError:
        pytest.fail(f"timed out after {timeout} s waiting for: {what}")


def healthy(backend: RedisBackend, want: bool = True) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await trio.lowlevel.checkpoint()
        return backend.healthy is want

    return check


def count_is(backend: RegistryBackend, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await backend.count() == n

    return check


async def stored(url: str) -> list[Entry]:
    backend = open_backend(url)
    try:
        with trio.fail_after(10):
            await backend.open()
            return await backend.entries()
    finally:
        await backend.aclose()


async def register_some(backend: RegistryBackend, n: int = 3, tag: str = "a") -> list[Entry]:
    return [
        await backend.register((f"{tag}{i}", f"u{i}"), [("127.0.0.1", 21_000 + i)], TTL)
        for i in range(n)
    ]


async def write_fails_fast(backend: RegistryBackend, port: int) -> StoreUnavailable:
    started = time.monotonic()
    with trio.fail_after(10), pytest.raises(StoreUnavailable) as info:
        await backend.register(("during", "1"), [("127.0.0.1", port)], TTL)
    # Fails within about one connect timeout (generous: the machine is shared).
    assert time.monotonic() - started < CONNECT_TIMEOUT * 6
    return info.value


# -- 5. outages ------------------------------------------------------------------------------


async def test_down_lookups_from_view_writes_fail_fast(
    servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start(servers)
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with opened_backend(url_for(server, new_ns())) as opened:
        backend = as_redis(opened)
        entries = await register_some(backend)
        assert backend.healthy
        server.kill()
        await eventually(healthy(backend, False), "the backend notices Redis is gone")
        # Reads are answered from the last coherent view.
        assert await backend.entries() == entries
        for entry in entries:
            assert await backend.lookup(entry.name) == entry
            assert await backend.get(entry.uid) == entry
        assert await backend.revision() == entries[-1].revision
        # Writes fail fast with a clear error, again and again.
        for _ in range(3):
            exc = await write_fails_fast(backend, 22_000)
            assert str(server.port) in str(exc)
        with trio.fail_after(10), pytest.raises(StoreUnavailable):
            await backend.unregister(entries[0].uid)
        with trio.fail_after(10), pytest.raises(StoreUnavailable):
            await backend.renew(entries[0].uid, TTL)
        # A failed write changed nothing in the view.
        assert await backend.entries() == entries
        assert await backend.lookup("during") is None
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING
        ]
        assert any("answering lookups from the last coherent view" in m for m in warnings), (
            caplog.text
        )


async def test_restart_with_persistence_converges(
    servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start(servers, extra=PERSISTENT)
    ns = new_ns()
    url = url_for(server, ns)
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with opened_backend(url) as opened:
        backend = as_redis(opened)
        entries = await register_some(backend, 4)
        await backend.unregister(entries[1].uid)
        kept = [entries[0], *entries[2:]]
        server.kill()
        await eventually(healthy(backend, False), "the backend notices Redis is gone")
        await write_fails_fast(backend, 22_001)
        assert await backend.entries() == kept
        back = restart(servers, server)
        await eventually(healthy(backend), "the backend follows Redis again")
        # Nothing Redis kept is lost; the view is the same.
        assert await backend.entries() == kept
        assert any("is back" in r.getMessage() for r in caplog.records), caplog.text
        assert not any("lost the registry" in r.getMessage() for r in caplog.records)
        # Writes work again and revisions continue.
        after = await backend.register(("after", "1"), [("127.0.0.1", 22_002)], TTL)
        assert after.revision > max(e.revision for e in entries)
        # A second backend sees everything, written before and after the restart.
        assert await stored(url_for(back, ns)) == [*kept, after]


async def test_restart_empty_reloads_and_revisions_stay_monotonic(
    servers: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start(servers)
    ns = new_ns()
    url = url_for(server, ns)
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with opened_backend(url) as opened:
        backend = as_redis(opened)
        entries = await register_some(backend, 3)
        highest = await backend.revision()
        assert highest == entries[-1].revision
        server.kill()
        await eventually(healthy(backend, False), "the backend notices Redis is gone")
        assert await backend.entries() == entries  # the last view, while down
        restart(servers, server)  # no persistence: empty
        await eventually(count_is(backend, 0), "the backend drops what Redis lost")
        await eventually(healthy(backend), "the backend follows Redis again")
        assert any("lost the registry" in r.getMessage() for r in caplog.records), caplog.text
        assert await backend.lookup(entries[0].name) is None
        # The revision never goes back: new registrations are newer than anything seen.
        assert await backend.revision() >= highest
        fresh = await backend.register(("fresh", "1"), [("127.0.0.1", 22_100)], TTL)
        assert fresh.revision > highest
        # Live actors re-register (as on their next lease renewal): lookups are restored.
        again = []
        for entry in entries:
            again.append(await backend.register(entry.uid, entry.addrs, TTL))
        revisions = [fresh.revision] + [e.revision for e in again]
        assert revisions == sorted(set(revisions))
        for entry in again:
            assert await backend.lookup(entry.name) == entry
        assert await stored(url) == [fresh, *again]


async def test_restart_empty_with_two_followers(servers: list[RedisServer]) -> None:
    server = start(servers)
    url = url_for(server, new_ns())
    async with opened_backend(url) as a_, opened_backend(url) as b_:
        a, b = as_redis(a_), as_redis(b_)
        entries = await register_some(a, 2)
        await eventually(count_is(b, 2), "b sees a's entries")
        highest = entries[-1].revision
        server.kill()
        await eventually(healthy(a, False), "a notices Redis is gone")
        await eventually(healthy(b, False), "b notices Redis is gone")
        assert await b.entries() == entries
        restart(servers, server)
        await eventually(count_is(b, 0), "b drops what Redis lost")
        await eventually(count_is(a, 0), "a drops what Redis lost")
        # b writes first after the loss; a's next write still gets a higher revision.
        eb = await b.register(("b", "1"), [("127.0.0.1", 22_200)], TTL)
        ea = await a.register(("a", "1"), [("127.0.0.1", 22_201)], TTL)
        assert highest < eb.revision < ea.revision
        await eventually(count_is(a, 2), "a sees b's write")
        await eventually(count_is(b, 2), "b sees a's write")
        assert await a.entries() == await b.entries() == [eb, ea]


# -- 6. change notifications across a restart --------------------------------------------------


async def test_pubsub_resubscribes_after_restart(servers: list[RedisServer]) -> None:
    server = start(servers)
    ns = new_ns()
    # A long poll interval: only notifications can explain a quick wake-up of b.
    url = url_for(server, ns, poll_interval=30)
    async with opened_backend(url) as a_, opened_backend(url) as b_:
        a, b = as_redis(a_), as_redis(b_)
        first = await wake_through(a, b, "before", 22_300)
        server.kill()
        await eventually(healthy(b, False), "b notices Redis is gone")
        restart(servers, server)
        await eventually(count_is(b, 0), "b drops what Redis lost")
        await eventually(healthy(b), "b subscribed again")
        for i in range(2):
            entry = await wake_through(a, b, f"after{i}", 22_301 + i)
            assert entry.revision > first.revision


async def wake_through(a: RegistryBackend, b: RegistryBackend, name: str, port: int) -> Entry:
    """Register ``name`` through ``a``; ``b``'s ``wait_changed`` must wake quickly."""
    seen = await b.revision()
    got: list[int] = []

    async def wait() -> None:
        got.append(await b.wait_changed(seen))

    started = time.monotonic()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            entry = await a.register((name, "1"), [("127.0.0.1", port)], TTL)
    assert time.monotonic() - started < 10
    assert got and got[0] >= entry.revision
    assert await b.lookup(name) == entry
    return entry
