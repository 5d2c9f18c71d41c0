"""Resolving backend URLs: the scheme table, plugins, URL errors and ``opened_backend``."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tractor_reg._exceptions import BackendClosed, BackendError, BackendURLError
from tractor_reg.backends import (
    BACKENDS,
    ENTRY_POINT_GROUP,
    MemoryBackend,
    RegistryBackend,
    open_backend,
    opened_backend,
)
from tractor_reg.backends._open import _import_path

from .conftest import FakeClock

PLUGIN_MODULE = "tractor_reg_fake_plugin"

PLUGIN_SOURCE = """
from tractor_reg.backends import MemoryBackend


class FakeBackend(MemoryBackend):
    scheme = "fakeplug"

    @classmethod
    def from_url(cls, url, *, clock):
        backend = cls(clock=clock)
        backend.url = url
        return backend


class NoFromUrl:
    scheme = "nofromurl"


class NotABackend:
    @classmethod
    def from_url(cls, url, *, clock):
        return object()
"""


@pytest.fixture
def plugin_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install a real (unpacked) distribution declaring backend entry points."""
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    dist = tmp_path / "tractor_reg_fake_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tractor-reg-fake-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [{ENTRY_POINT_GROUP}]
            fakeplug = {PLUGIN_MODULE}:FakeBackend
            nofromurl = {PLUGIN_MODULE}:NoFromUrl
            notabackend = {PLUGIN_MODULE}:NotABackend
            brokenplug = {PLUGIN_MODULE}_missing:Backend
            memory = {PLUGIN_MODULE}:FakeBackend
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.modules.pop(PLUGIN_MODULE, None)


# -- the scheme table ----------------------------------------------------------------------


def test_builtin_table() -> None:
    assert BACKENDS["memory"] == "tractor_reg.backends._memory:MemoryBackend"
    for scheme, target in BACKENDS.items():
        cls = _import_path(target)
        # a class serving several schemes (redis, rediss, unix, ...) lists them all
        assert cls.scheme == scheme or scheme in cls.SCHEMES
        assert callable(cls.from_url)


@pytest.mark.parametrize("url", ["memory://", "memory:///", "MEMORY://", "memory:"])
async def test_memory_url_builds_unopened_backend(url: str) -> None:
    backend = open_backend(url)
    assert isinstance(backend, MemoryBackend)
    assert isinstance(backend, RegistryBackend)
    assert backend.scheme == "memory"
    with pytest.raises(BackendClosed, match="not opened"):
        await backend.count()
    await backend.aclose()


async def test_clock_is_passed_through() -> None:
    clock = FakeClock(now=42.0)
    async with opened_backend("memory://", clock=clock) as backend:
        entry = await backend.register(("a", "b"), [("h", 1)], 8)
    assert entry.registered_at == 42.0
    assert entry.expires_at == 50.0


def test_table_is_extensible(plugin_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "tabled", f"{PLUGIN_MODULE}:FakeBackend")
    backend = open_backend("tabled://somewhere?x=1")
    assert type(backend).__name__ == "FakeBackend"
    assert backend.url == "tabled://somewhere?x=1"  # type: ignore[attr-defined]


def test_table_row_that_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "gone", "tractor_reg.backends._no_such_module:Backend")
    with pytest.raises(BackendError, match="cannot import") as info:
        open_backend("gone://")
    assert isinstance(info.value.__cause__, ImportError)


# -- URL errors ----------------------------------------------------------------------------


def test_unknown_scheme_lists_known_schemes() -> None:
    with pytest.raises(BackendURLError, match="nosuch") as info:
        open_backend("nosuch://host/db")
    assert "memory://" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        None,
        5,
        b"memory://",
        "",
        " ",
        "memory:// ",
        " memory://",
        "memory://\n",
        "mem\x00ory://",
        "no-scheme-here",
        "/just/a/path",
        "://nothing",
        "memory://[::1",
    ],
)
def test_malformed_urls(url: Any) -> None:
    with pytest.raises(BackendURLError):
        open_backend(url)


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("memory://host", "host"),
        ("memory://user@", "user@"),
        ("memory://:1", ":1"),
        ("memory:///some/path", "/some/path"),
        ("memory://?size=1", "size=1"),
        ("memory:///?a=b", "a=b"),
        ("memory://#frag", "frag"),
    ],
)
def test_memory_url_rejects_options(url: str, part: str) -> None:
    with pytest.raises(BackendURLError, match="memory://") as info:
        open_backend(url)
    assert part in str(info.value)


def test_memory_from_url_rejects_other_schemes() -> None:
    with pytest.raises(BackendURLError):
        MemoryBackend.from_url("sqlite://", clock=FakeClock())


# -- plugins -------------------------------------------------------------------------------


async def test_entry_point_plugin(plugin_env: Path) -> None:
    clock = FakeClock(now=7.0)
    backend = open_backend("fakeplug://anything?opt=1", clock=clock)
    assert type(backend).__name__ == "FakeBackend"
    assert backend.scheme == "fakeplug"
    assert backend.url == "fakeplug://anything?opt=1"  # type: ignore[attr-defined]
    async with opened_backend(backend) as opened:
        assert (await opened.register(("a", "b"), [("h", 1)], 1)).registered_at == 7.0


def test_plugins_are_listed_as_known(plugin_env: Path) -> None:
    with pytest.raises(BackendURLError) as info:
        open_backend("nosuch://")
    assert "fakeplug://" in str(info.value)
    assert "memory://" in str(info.value)


def test_builtin_table_wins_over_plugins(plugin_env: Path) -> None:
    assert type(open_backend("memory://")) is MemoryBackend


def test_plugin_that_fails_to_load(plugin_env: Path) -> None:
    with pytest.raises(BackendError, match="brokenplug") as info:
        open_backend("brokenplug://")
    assert isinstance(info.value.__cause__, ImportError)
    assert not isinstance(info.value, BackendURLError)


def test_plugin_without_from_url(plugin_env: Path) -> None:
    with pytest.raises(BackendError, match="from_url"):
        open_backend("nofromurl://")


def test_plugin_returning_non_backend(plugin_env: Path) -> None:
    with pytest.raises(BackendError, match="RegistryBackend"):
        open_backend("notabackend://")


# -- opened_backend ------------------------------------------------------------------------


async def test_opened_backend_opens_and_closes() -> None:
    async with opened_backend("memory://") as backend:
        assert await backend.count() == 0
    with pytest.raises(BackendClosed):
        await backend.count()


async def test_opened_backend_accepts_an_instance() -> None:
    instance = MemoryBackend()
    async with opened_backend(instance) as backend:
        assert backend is instance
        await backend.register(("a", "b"), [("h", 1)], 5)
    with pytest.raises(BackendClosed):
        await instance.count()


async def test_opened_backend_closes_on_exception() -> None:
    instance = MemoryBackend()
    with pytest.raises(KeyError):
        async with opened_backend(instance):
            raise KeyError("boom")
    with pytest.raises(BackendClosed):
        await instance.count()


async def test_opened_backend_closes_on_cancel() -> None:
    instance = MemoryBackend()
    entered = False
    with trio.CancelScope() as scope:
        async with opened_backend(instance) as backend:
            entered = True
            scope.cancel()
            await backend.wait_changed(await backend.revision())
    assert entered
    assert scope.cancelled_caught
    with pytest.raises(BackendClosed):
        await instance.count()


async def test_opened_backend_closes_when_open_fails() -> None:
    class FailingOpen(MemoryBackend):
        closed = 0

        async def open(self) -> None:
            raise BackendError("cannot connect")

        async def aclose(self) -> None:
            type(self).closed += 1
            await super().aclose()

    with pytest.raises(BackendError, match="cannot connect"):
        async with opened_backend(FailingOpen()):
            pytest.fail("body must not run")
    assert FailingOpen.closed == 1


async def test_opened_backend_url_error() -> None:
    with pytest.raises(BackendURLError):
        async with opened_backend("nosuch://"):
            pytest.fail("body must not run")


async def test_open_twice_is_an_error() -> None:
    async with opened_backend("memory://") as backend:
        with pytest.raises(BackendError, match="already opened"):
            await backend.open()
