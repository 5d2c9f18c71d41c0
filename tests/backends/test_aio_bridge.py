"""The trio -> asyncio bridge (:class:`tractor_reg._aio.AsyncioThread`).

No test here uses ``trio.to_thread``: its idle worker threads outlive the call and would
spoil the "no thread left behind" checks. Those checks compare the *new* threads only
(a worker thread left by an earlier test may exit meanwhile; that is not a leak).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import trio
import trio.testing

from tractor_reg import (
    BackendClosed,
    BackendError,
    SchemaError,
    StoreUnavailable,
    TractorRegError,
)
from tractor_reg._aio import AsyncioThread, BridgeCancelled
from tractor_reg.backends import SQLiteBackend, backup_sqlite, migrate_sqlite, opened_backend


class Boom(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"boom {code}")
        self.code = code


def new_threads(before: set[threading.Thread]) -> list[str]:
    return sorted(t.name for t in set(threading.enumerate()) - before)


async def wait_for(event: threading.Event, what: str, timeout: float = 5.0) -> None:
    """Poll a cross-thread event with a deadline (trio cannot await a threading.Event)."""
    with trio.fail_after(timeout):
        while not event.is_set():
            await trio.sleep(0.005)
    assert event.is_set(), what


# -- basics ------------------------------------------------------------------------------------


def test_works_under_a_plain_trio_run() -> None:
    trio_thread = threading.get_ident()
    before = set(threading.enumerate())

    async def main() -> tuple[int, bool, int]:
        bridge = AsyncioThread("test-bridge")
        await bridge.start()
        assert bridge.running

        async def probe(x: int) -> tuple[int, bool, int]:
            await asyncio.sleep(0)
            return threading.get_ident(), asyncio.get_running_loop().is_running(), x * 2

        try:
            return await bridge.run(probe, 21)
        finally:
            await bridge.aclose()
            assert not bridge.running

    ident, loop_running, value = trio.run(main)
    assert ident != trio_thread  # fn ran on the asyncio thread, not the trio one
    assert loop_running
    assert value == 42
    assert new_threads(before) == []


async def test_results_and_exceptions_cross_over() -> None:
    bridge = AsyncioThread()
    await bridge.start()
    try:

        async def value(x: Any) -> Any:
            await asyncio.sleep(0)
            return x

        payload = {"a": [1, 2, (3, "x")], "b": None}
        assert await bridge.run(value, payload) is payload

        async def fail(code: int) -> None:
            await asyncio.sleep(0)
            raise Boom(code)

        with pytest.raises(Boom) as info:
            await bridge.run(fail, 7)
        assert info.value.code == 7
        assert str(info.value) == "boom 7"

        async def key_error() -> None:
            raise KeyError("missing")

        with pytest.raises(KeyError, match="missing"):
            await bridge.run(key_error)

        # Many concurrent calls, each gets its own answer.
        results: dict[int, int] = {}

        async def one(i: int) -> None:
            async def square(n: int) -> int:
                await asyncio.sleep(0.001 * (n % 5))
                return n * n

            results[i] = await bridge.run(square, i)

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(one, i)
        assert results == {i: i * i for i in range(100)}
    finally:
        await bridge.aclose()


async def test_start_twice_is_an_error() -> None:
    bridge = AsyncioThread()
    await bridge.start()
    try:
        with pytest.raises(RuntimeError):
            await bridge.start()
    finally:
        await bridge.aclose()


# -- cancellation -------------------------------------------------------------------------------


async def test_trio_cancellation_cancels_the_asyncio_task() -> None:
    bridge = AsyncioThread()
    await bridge.start()
    started = threading.Event()
    cancelled = threading.Event()
    finished = threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
            finished.set()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    saw_cancelled = False
    try:
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def cancel_when_started() -> None:
                        await wait_for(started, "the asyncio task started")
                        scope.cancel()

                    nursery.start_soon(cancel_when_started)
                    try:
                        await bridge.run(work)
                    except trio.Cancelled:
                        saw_cancelled = True
                        raise
        assert scope.cancelled_caught
        assert saw_cancelled, "the trio caller must see trio.Cancelled"
        await wait_for(cancelled, "the asyncio task was cancelled")
        assert not finished.is_set()
        # The bridge is still usable afterwards.

        async def ok() -> str:
            return "ok"

        assert await bridge.run(ok) == "ok"
    finally:
        await bridge.aclose()


async def test_trio_cancellation_waits_until_the_asyncio_side_unwound() -> None:
    """The docstring's promise: a cancelled call never leaves work running behind."""
    bridge = AsyncioThread()
    await bridge.start()
    started = threading.Event()
    unwound = threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)  # cleanup that takes a moment (e.g. a ROLLBACK)
            unwound.set()
            raise

    unwound_when_cancelled: bool | None = None
    try:
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def cancel_when_started() -> None:
                        await wait_for(started, "the asyncio task started")
                        scope.cancel()

                    nursery.start_soon(cancel_when_started)
                    try:
                        await bridge.run(work)
                    except trio.Cancelled:
                        unwound_when_cancelled = unwound.is_set()
                        raise
    finally:
        await bridge.aclose()
    assert unwound_when_cancelled is True


async def test_asyncio_side_cancellation_raises_bridge_cancelled() -> None:
    bridge = AsyncioThread()
    await bridge.start()
    try:

        async def cancel_myself() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(10)

        with pytest.raises(BridgeCancelled) as info:
            await bridge.run(cancel_myself)
        assert isinstance(info.value, BackendError)
        assert isinstance(info.value, TractorRegError)

        async def raise_cancelled() -> None:
            raise asyncio.CancelledError

        with pytest.raises(BridgeCancelled):
            await bridge.run(raise_cancelled)
    finally:
        await bridge.aclose()


# -- the trio loop keeps running ----------------------------------------------------------------


async def test_trio_loop_is_not_blocked_while_asyncio_works() -> None:
    bridge = AsyncioThread()
    await bridge.start()
    ticks = 0
    try:

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await trio.sleep(0.01)
                ticks += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            with trio.fail_after(5):
                await bridge.run(asyncio.sleep, 0.2)
            nursery.cancel_scope.cancel()
        # ~20 ticks fit in 0.2 s; a blocked loop would give 0 or 1.
        assert ticks >= 5, f"the trio loop ticked only {ticks} times during a 0.2 s asyncio call"

        # A call that blocks the asyncio thread itself does not block trio either.
        ticks = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)

            async def blocking() -> None:
                threading.Event().wait(0.2)  # blocks the asyncio thread, not trio

            with trio.fail_after(5):
                await bridge.run(blocking)
            nursery.cancel_scope.cancel()
        assert ticks >= 5
    finally:
        await bridge.aclose()


# -- closing ---------------------------------------------------------------------------------


async def test_aclose_leaves_no_thread_and_is_idempotent() -> None:
    before = set(threading.enumerate())
    bridge = AsyncioThread("test-bridge-close")
    await bridge.start()
    assert "test-bridge-close" in new_threads(before)

    async def ok() -> int:
        return 1

    assert await bridge.run(ok) == 1
    await bridge.aclose()
    assert new_threads(before) == []
    assert not bridge.running
    await bridge.aclose()  # idempotent
    assert new_threads(before) == []
    with pytest.raises(BackendClosed):
        await bridge.run(ok)


async def test_aclose_of_a_never_started_bridge() -> None:
    bridge = AsyncioThread()
    await bridge.aclose()
    await bridge.aclose()

    async def ok() -> int:
        return 1

    with pytest.raises(BackendClosed):
        await bridge.run(ok)


async def test_aclose_completes_when_the_caller_is_cancelled() -> None:
    before = set(threading.enumerate())
    bridge = AsyncioThread()
    await bridge.start()
    with trio.CancelScope() as scope:
        scope.cancel()
        await bridge.aclose()
    assert new_threads(before) == []


async def test_aclose_ends_calls_in_flight() -> None:
    before = set(threading.enumerate())
    bridge = AsyncioThread()
    await bridge.start()
    started = threading.Event()
    outcome: list[BaseException] = []

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def caller() -> None:
        try:
            await bridge.run(forever)
        except BridgeCancelled as exc:
            outcome.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            await wait_for(started, "the asyncio call started")
            await bridge.aclose()
    assert len(outcome) == 1 and isinstance(outcome[0], BridgeCancelled)
    assert new_threads(before) == []


async def test_a_call_submitted_just_before_aclose_is_answered() -> None:
    """run() and aclose() racing: the call must end (BridgeCancelled), never hang.

    Made deterministic by keeping the asyncio thread busy while both the call and the
    stop request queue up behind it.
    """
    before = set(threading.enumerate())
    bridge = AsyncioThread()
    await bridge.start()
    busy = threading.Event()
    gate = threading.Event()
    outcome: list[str] = []

    async def block_the_loop() -> None:
        busy.set()
        gate.wait(5)  # blocks the asyncio thread itself

    async def ok() -> str:
        return "ok"

    async def blocker() -> None:
        await bridge.run(block_the_loop)

    async def late_call() -> None:
        try:
            outcome.append(await bridge.run(ok))
        except BridgeCancelled:
            outcome.append("bridge-cancelled")

    try:
        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(blocker)
                await wait_for(busy, "the asyncio thread is busy")
                nursery.start_soon(late_call)
                await trio.testing.wait_all_tasks_blocked()  # the call is queued
                nursery.start_soon(bridge.aclose)
                await trio.testing.wait_all_tasks_blocked()  # the stop is queued
                gate.set()
    finally:
        gate.set()
    assert outcome in (["ok"], ["bridge-cancelled"])
    assert new_threads(before) == []


async def test_aclose_joins_the_default_executor_threads() -> None:
    before = set(threading.enumerate())
    bridge = AsyncioThread()
    await bridge.start()

    async def use_executor() -> None:
        loop = asyncio.get_running_loop()
        # Work handed to the default executor and still running when the call returns.
        loop.run_in_executor(None, threading.Event().wait, 0.3)
        await asyncio.sleep(0)

    await bridge.run(use_executor)
    await bridge.aclose()
    assert new_threads(before) == []


# -- a SQLite backend leaves no thread behind -------------------------------------------------


@contextmanager
def slow_aiosqlite_thread_exit(max_delay: float) -> Iterator[threading.Event]:
    """Delay the exit of aiosqlite's worker threads started inside the block.

    A profile hook (inherited by threads started meanwhile) holds a worker thread at the
    return of its main function for up to ``max_delay`` seconds or until the yielded
    event is set: the situation of a worker the OS schedules late after it answered the
    close. Code that joins the thread waits for it; code that does not leaves it behind.
    """
    release = threading.Event()

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if event == "return" and frame.f_code.co_name == "_connection_worker_thread":
            release.wait(max_delay)

    threading.setprofile(hook)
    try:
        yield release
    finally:
        threading.setprofile(None)
        release.set()


async def _open_close(path: Path) -> None:
    backend = SQLiteBackend(str(path), busy_timeout=1.0)
    try:
        await backend.open()
        await backend.register(("alpha", "a1"), [("127.0.0.1", 7001)], 60.0)
        assert await backend.lookup("alpha") is not None
    finally:
        await backend.aclose()


async def _polling(path: Path) -> None:
    # run() polls every 1 ms, so the close usually lands on a poll in flight.
    async with opened_backend(f"sqlite:///{path}?poll_interval=0.001") as backend:
        await backend.register(("alpha", "a1"), [("127.0.0.1", 7001)], 60.0)
        for _ in range(5):
            await trio.sleep(0.001)


async def _schema_error(path: Path) -> None:
    path.write_bytes(b"this is not a SQLite database\n" * 200)
    backend = SQLiteBackend(str(path))
    with pytest.raises(SchemaError):
        await backend.open()
    await backend.aclose()


async def _cannot_open(path: Path) -> None:
    path.mkdir()  # a directory where the database should be: the connect itself fails
    backend = SQLiteBackend(str(path))
    with pytest.raises(StoreUnavailable):
        await backend.open()
    await backend.aclose()


async def _migrate(path: Path) -> None:
    await migrate_sqlite(str(path))
    await migrate_sqlite(str(path), dry_run=True)


async def _backup(path: Path) -> None:
    await _open_close(path)
    await backup_sqlite(str(path), str(path.with_name("copy.db")))


SCENARIOS = {
    "open-close": _open_close,
    "opened_backend-polling": _polling,
    "schema-error": _schema_error,
    "cannot-open": _cannot_open,
    "migrate": _migrate,
    "backup": _backup,
}


@pytest.mark.sqlite
# "cannot-open" is left out here: with the bug marked below, aiosqlite's worker may
# outlive the failed open *and* raise in its thread once the loop is closed (an unhandled
# thread exception), at random; test_sqlite_joins_a_late_aiosqlite_thread shows it for sure.
@pytest.mark.parametrize("scenario", [name for name in SCENARIOS if name != "cannot-open"])
async def test_sqlite_leaves_no_thread_behind(tmp_path: Path, scenario: str) -> None:
    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "registry.db"
        path.parent.mkdir()
        before = set(threading.enumerate())
        await SCENARIOS[scenario](path)
        leftover = new_threads(before)
        assert leftover == [], f"round {round_}: threads alive after closing: {leftover}"


@pytest.mark.sqlite
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_sqlite_joins_a_late_aiosqlite_thread(tmp_path: Path, scenario: str) -> None:
    """Closing waits for aiosqlite's worker even when it is slow to exit."""
    path = tmp_path / "registry.db"
    before = set(threading.enumerate())
    with slow_aiosqlite_thread_exit(0.2) as release:
        await SCENARIOS[scenario](path)
        leftover = new_threads(before)
        release.set()
    # Whatever the outcome, let a straggler finish inside this test (an exception it
    # raises in its thread must not be blamed on the next test).
    for thread in set(threading.enumerate()) - before:
        thread.join(5)
    assert leftover == [], f"threads alive after closing returned: {leftover}"


def test_profile_hook_is_reset() -> None:
    """Guard: the hook above must not leak into other tests' threads."""
    assert threading.getprofile() is None
    assert sys.getprofile() is None
