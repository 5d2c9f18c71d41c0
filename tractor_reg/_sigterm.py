"""SIGTERM in a root actor: the teardown Ctrl-C gets, then the end SIGTERM asks for.

A root actor runs under the program's own ``trio.run``, where SIGTERM (what systemd,
Kubernetes and ``docker stop`` send) would kill the process on the spot: no unregister,
no child reaped. While a root runs, and only if the program left SIGTERM at its default
disposition, SIGTERM cancels the root block instead; once the root has torn down
(unregistered, children reaped, socket files removed, store closed) the default
disposition is back and the process ends as killed by SIGTERM, as it would have ended
without a root, so supervisors see the status they expect.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import trio

from ._actor import Actor

log = logging.getLogger("tractor_reg.root")


def may_take_sigterm() -> bool:
    """Whether a root may handle SIGTERM: the program has not claimed it (it is at
    ``SIG_DFL``, so also not ignored) and this is the main thread (the only one that
    may set signal handlers)."""
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )


class RootSigterm:
    """SIGTERM handling for one root block; see :func:`root_sigterm`."""

    def __init__(self, signals: AsyncIterator[int] | None) -> None:
        self._signals = signals
        self.received = False

    def watch(self, actor: Actor) -> None:
        """Cancel ``actor`` (the body of its root block) on SIGTERM, from now on."""
        if self._signals is None:
            return
        assert actor._service is not None, "watch() needs a running actor"
        actor._service.start_soon(self._cancel_on_sigterm, actor, self._signals)

    async def _cancel_on_sigterm(self, actor: Actor, signals: AsyncIterator[int]) -> None:
        # Later SIGTERMs are absorbed here while the task runs (teardown included);
        # one that arrives after it ends is delivered when the receiver closes, which
        # is after teardown too.
        async for _ in signals:
            if not self.received:
                log.info("%r: SIGTERM; shutting down", actor)
            self.received = True
            actor.cancel_soon()


def _end_as_terminated() -> None:
    """End the process as SIGTERM's default action does (buffered output written first)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # closed or broken: nothing more can be written to it anyway
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def root_sigterm() -> Iterator[RootSigterm]:
    """Take SIGTERM over for a root block when :func:`may_take_sigterm`.

    SIGTERM received before the actor runs waits until :meth:`RootSigterm.watch`; the
    previous disposition is restored on exit. When the block ends without an exception
    after a SIGTERM cancelled it, the process then ends as killed by SIGTERM. (When an
    exception leaves the block, it propagates: it says more than the signal.)
    """
    if not may_take_sigterm():
        yield RootSigterm(None)
        return
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        term = RootSigterm(signals)
        yield term
    if term.received:
        _end_as_terminated()
