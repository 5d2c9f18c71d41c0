"""Fixtures for the backend conformance suite.

:data:`BACKEND_URLS` is the table the suite runs over: one ``pytest.param`` per backend,
marked with the backend's marker. A URL may contain ``{tmp_path}``, replaced by the
test's temporary directory (for file-based stores such as SQLite).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.redis_servers import (
    LONG_LIVED,
    RedisCluster,
    RedisServer,
    start_cluster,
    start_standalone,
)
from tractor_reg.backends import RegistryBackend, opened_backend

BACKEND_URLS = [
    pytest.param("memory://", marks=pytest.mark.memory, id="memory"),
    pytest.param("sqlite:///{tmp_path}/registry.db", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("{redis}?namespace={namespace}", marks=pytest.mark.redis, id="redis"),
    pytest.param(
        "{redis_cluster}?namespace={namespace}",
        marks=[pytest.mark.redis, pytest.mark.redis_cluster],
        id="redis-cluster",
    ),
]


class FakeClock:
    """A wall clock that only moves when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKEND_URLS)
def backend_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    url: str = request.param
    # Servers are started only for the rows that use them (session-scoped fixtures).
    values: dict[str, object] = {"tmp_path": tmp_path, "namespace": uuid.uuid4().hex}
    if "{redis}" in url:
        values["redis"] = request.getfixturevalue("redis_server").url
    if "{redis_cluster}" in url:
        values["redis_cluster"] = request.getfixturevalue("redis_cluster").url
    return url.format(**values)


@pytest.fixture
async def backend(backend_url: str, clock: FakeClock) -> AsyncIterator[RegistryBackend]:
    async with opened_backend(backend_url, clock=clock) as opened:
        yield opened


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server of the test session's own (namespaces keep tests apart)."""
    server = start_standalone()
    assert server.proc is not None
    LONG_LIVED.add(server.proc.pid)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster of the test session's own."""
    cluster = start_cluster()
    LONG_LIVED.update(s.proc.pid for s in cluster.servers if s.proc is not None)
    try:
        yield cluster
    finally:
        cluster.stop()


async def churn_history(backend: RegistryBackend, at: Callable[[int], tuple[str, int]]) -> None:
    """Every kind of change but expiry: registrations, a re-registration, an eviction, a
    lost address, a renewal (no change) and an unregistration."""
    await backend.register(("svc", "a"), [at(1), at(2)], 600.0)
    await backend.register(("svc", "b"), [at(3)], 600.0)
    await backend.register(("svc", "a"), [at(1), at(2)], 600.0)
    await backend.register(("other", "c"), [at(3)], 600.0)  # evicts b (its only address)
    await backend.delete_addr(at(2))  # a loses an address: updated
    await backend.renew(("svc", "a"), 600.0)
    await backend.unregister(("other", "c"))
