"""Fixtures for the backend conformance suite.

:data:`BACKEND_URLS` is the table the suite runs over: one ``pytest.param`` per backend,
marked with the backend's marker. A URL may contain ``{tmp_path}``, replaced by the
test's temporary directory (for file-based stores such as SQLite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tractor_reg.backends import RegistryBackend, opened_backend

BACKEND_URLS = [
    pytest.param("memory://", marks=pytest.mark.memory, id="memory"),
    pytest.param("sqlite:///{tmp_path}/registry.db", marks=pytest.mark.sqlite, id="sqlite"),
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
    return url.format(tmp_path=tmp_path)


@pytest.fixture
async def backend(backend_url: str, clock: FakeClock) -> AsyncIterator[RegistryBackend]:
    async with opened_backend(backend_url, clock=clock) as opened:
        yield opened
