"""Entry point of a child actor process: ``python -m tractor_reg._child`` (spec on stdin)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator

import msgspec
import trio

from . import _msg, _state
from ._actor import Actor
from ._addr import wrap_address
from ._exceptions import pack_error
from ._log import CUSTOM_LEVELS, setup_logging
from ._security import Security, TLSConfig
from ._spawn import SpawnSpec
from ._util import collapse_eg
from .log import STD_PALETTE, add_log_level

#: How long a child that gets SIGTERM gives its own teardown (its children included):
#: within the wait its parent allows between SIGTERM and SIGKILL (at least
#: ``_spawn._RESERVE`` unless the parent itself is nearly out of time).
SIGTERM_BUDGET = 0.25


class _BootReport:
    """The pipe on which a child tells its parent why it failed to boot.

    Open until the actor has connected back to its parent; from then on failures reach
    the parent over that connection (or as a crash), never through this pipe.
    """

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def send(self, exc: Exception, uid: tuple[str, str]) -> bool:
        """Send ``exc`` boxed to the parent; False when the pipe is closed or broken."""
        if self.fd is None:
            return False
        data = memoryview(_msg.encode(pack_error(exc, uid=uid)))
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            return False
        finally:
            self.close()
        return True


async def _run(actor: Actor, report: _BootReport, terminated: list[bool]) -> None:
    # SIGTERM is a request to cancel, as from the parent but in a hurry; the receiver
    # stays installed through teardown, so a second one cannot cut teardown short.
    # collapse_eg: a boot failure (an enable_modules import error) leaves as itself, for
    # the boot report, not wrapped in this nursery's group.
    with trio.open_signal_receiver(signal.SIGTERM) as signals, collapse_eg():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_sigterm, actor, signals, terminated)
            try:
                async with actor.running():
                    report.close()
                    await trio.sleep_forever()
            finally:
                nursery.cancel_scope.cancel()


async def _cancel_on_sigterm(
    actor: Actor, signals: AsyncIterator[int], terminated: list[bool]
) -> None:
    async for _ in signals:
        terminated[0] = True
        actor.cancel_soon(SIGTERM_BUDGET)


def main() -> int:
    spec = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=SpawnSpec)
    report = _BootReport(spec.report_fd)
    try:
        return _main(spec, report)
    except Exception as exc:
        # Boot failures (an enable_modules import error, ...) go to the parent boxed.
        if report.send(exc, (spec.name, spec.uuid)):
            return 1
        raise


def _main(spec: SpawnSpec, report: _BootReport) -> int:
    for path in reversed(spec.sys_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    for name, value in spec.log_levels.items():
        if CUSTOM_LEVELS.get(name) != value:
            # the level, its logger method and its palette entry, as in the parent
            add_log_level(name, value, STD_PALETTE.get(name, "white"))
    setup_logging(spec.loglevel)
    _state._mark_child_process()
    _state._set_runtime_vars(
        is_root=False,
        root_addrs=spec.root_addrs,
        registry_addrs=spec.reg_addrs,
        transports=sorted({wrap_address(a).transport for a in spec.bind_addrs}),
    )
    actor = Actor(
        spec.name,
        uuid=spec.uuid,
        enable_modules=spec.enable_modules,
        reg_addrs=[wrap_address(a) for a in spec.reg_addrs],
        bind_addrs=[wrap_address(a) for a in spec.bind_addrs],
        parent_addr=wrap_address(spec.parent_addr),
        main_path=spec.main_path,
        max_frame_size=spec.max_frame_size,
        handshake_timeout=spec.handshake_timeout,
        connect_timeout=spec.connect_timeout,
        lease_ttl=spec.lease_ttl,
        renew_interval=spec.renew_interval,
        call_timeout=spec.call_timeout,
        loglevel=spec.loglevel,
        security=Security(
            spec.secret,
            TLSConfig(spec.tls_cert, spec.tls_key, spec.tls_ca)
            if spec.tls_cert or spec.tls_ca
            else None,
        ),
    )
    actor.runtime_config = _ChildConfig(spec)  # type: ignore[attr-defined]
    terminated = [False]
    try:
        trio.run(_run, actor, report, terminated)
    except KeyboardInterrupt:
        return 130
    if terminated[0]:
        # Cleaned up; now end as SIGTERM ends a process, so the parent sees why.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    return 0


class _ChildConfig:
    """The slice of the root's settings a child passes on to its own children."""

    def __init__(self, spec: SpawnSpec) -> None:
        self.enable_transports = sorted({wrap_address(a).transport for a in spec.bind_addrs})
        self.loglevel = spec.loglevel
        self.renew_interval = spec.renew_interval


if __name__ == "__main__":
    sys.exit(main())
