"""The bridge from trio to asyncio libraries (``aiosqlite``, ``redis.asyncio``).

One asyncio event loop runs in a dedicated daemon thread per :class:`AsyncioThread`.
Trio code submits a coroutine function with :meth:`AsyncioThread.run`; the trio task
sleeps (never blocking the trio loop) until the asyncio side finishes, woken through
the trio token. Cancellation crosses both ways: a cancelled trio caller cancels the
asyncio task and waits for it to unwind (so no half-finished work is left running); an
asyncio task cancelled from its own side raises :class:`BridgeCancelled` in trio.

Cost: one cross-thread hop each way per call (measured in ``bench/``), so callers batch
work into few calls instead of calling once per item.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from ._exceptions import BackendClosed, BackendError

T = TypeVar("T")


class BridgeCancelled(BackendError):
    """The asyncio side cancelled an operation the trio side was waiting for."""


class AsyncioThread:
    """An asyncio loop in its own thread, driven from trio.

    Lifecycle: ``await start()``, any number of ``await run(fn, *args)``, then
    ``await aclose()``, which stops the loop and joins the thread (no thread is left
    behind, even if the caller is cancelled).
    """

    def __init__(self, name: str = "tractor_reg-asyncio") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopped = trio.Event()
        self._waiters: set[trio.Event] = set()

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._closed

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("AsyncioThread already started")
        token = trio.lowlevel.current_trio_token()
        ready = trio.Event()
        self._stopped = trio.Event()
        stopped = self._stopped
        loop = asyncio.new_event_loop()

        def _signal(event: trio.Event) -> None:
            try:
                token.run_sync_soon(event.set)
            except trio.RunFinishedError:
                pass

        def _main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(_signal, ready)
            try:
                loop.run_forever()
            finally:
                # Let cancelled tasks run their cleanup before the loop goes away.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                # Threads of the default executor (getaddrinfo, run_in_executor) too.
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()
                _signal(stopped)

        self._loop = loop
        # Not trio.to_thread: its idle worker threads outlive the call, and callers
        # check that closing a backend leaves no thread behind.
        self._thread = threading.Thread(target=_main, name=self._name, daemon=True)
        self._thread.start()
        await ready.wait()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the asyncio loop and return its result.

        ``fn`` is called in the asyncio thread, so it may create loop-bound objects.
        """
        loop = self._loop
        if loop is None or self._closed:
            raise BackendClosed("the asyncio bridge is not running")
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[outcome.Outcome[T]] = []
        task_box: list[asyncio.Task[None]] = []

        def _wake(_: object = None) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # the trio run is gone; nobody waits any more

        async def _call() -> None:
            # The outcome (value or exception, cancellation included) is handed over whole.
            box.append(await outcome.acapture(fn, *args))

        def _start() -> None:
            task = loop.create_task(_call())
            task_box.append(task)
            # Fires once the task has really finished (also if it was cancelled before
            # its first step), never earlier.
            task.add_done_callback(_wake)

        self._waiters.add(done)
        try:
            loop.call_soon_threadsafe(_start)
            try:
                await done.wait()
            except trio.Cancelled:
                # FIFO: _start has run before this, so the task exists to be cancelled.
                loop.call_soon_threadsafe(lambda: task_box and task_box[0].cancel())
                # Wait (shielded) for the asyncio side to unwind before reporting
                # Cancelled, so a cancelled call never leaves work running behind.
                with trio.CancelScope(shield=True):
                    await done.wait()
                raise
        except RuntimeError as exc:  # call_soon_threadsafe on a loop that just closed
            raise BackendClosed("the asyncio bridge stopped") from exc
        finally:
            self._waiters.discard(done)
        if not box:
            why = "stopped before the call ran" if self._closed else "cancelled the operation"
            raise BridgeCancelled(f"the asyncio side {why}")
        result = box[0]
        if isinstance(result, outcome.Error) and isinstance(result.error, asyncio.CancelledError):
            raise BridgeCancelled("the asyncio side cancelled the operation") from result.error
        return result.unwrap()

    async def aclose(self) -> None:
        """Stop the loop and join its thread. Idempotent; completes even if cancelled."""
        if self._closed or self._loop is None or self._thread is None:
            self._closed = True
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        loop.call_soon_threadsafe(loop.stop)
        with trio.CancelScope(shield=True):
            await self._stopped.wait()
        thread.join()  # the thread signalled its last step: this returns at once
        # Calls whose task never got to run before the loop went away: answer them.
        for waiter in list(self._waiters):
            waiter.set()
