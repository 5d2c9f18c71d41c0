"""Upstream ``tractor.trionics``' helpers and ``open_actor_cluster``, through the public API."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import tractor_reg as tractor
from tests.procs import pid_alive, wait_gone
from tests.rpc_targets import funcs, logtrio

TARGETS = "tests.rpc_targets.logtrio"


async def _cancelled_group() -> BaseExceptionGroup[BaseException]:
    """A real group of ``trio.Cancelled`` from a nursery cancelled from outside."""
    caught: list[BaseExceptionGroup[BaseException]] = []
    with trio.CancelScope() as scope:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                await trio.lowlevel.checkpoint()
                scope.cancel()
                await trio.sleep_forever()
        except BaseExceptionGroup as group:
            caught.append(group)
            raise
    return caught[0]


# -- collapse_eg / get_collapsed_eg ----------------------------------------------------------


async def test_collapse_eg_raises_a_lone_member_in_place_of_its_group() -> None:
    with pytest.raises(KeyError) as info:
        async with tractor.trionics.collapse_eg(), trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise KeyError("lone")
    assert info.value.args == ("lone",)
    assert tractor.trionics.COLLAPSED_NOTE in info.value.__notes__


async def test_collapse_eg_keeps_groups_of_several_and_ignored_types() -> None:
    async def fail(exc: Exception) -> None:
        raise exc

    with pytest.raises(ExceptionGroup) as info:
        async with tractor.trionics.collapse_eg(), trio.open_nursery() as nursery:
            nursery.start_soon(fail, ValueError("a"))
            nursery.start_soon(fail, ValueError("b"))
    assert sorted(str(e) for e in info.value.exceptions) == ["a", "b"]
    with pytest.raises(ExceptionGroup):
        async with tractor.trionics.collapse_eg(ignore={KeyError}):
            raise ExceptionGroup("one", [KeyError("kept")])
    with pytest.raises(KeyError) as plain:
        async with tractor.trionics.collapse_eg(add_notes=False):
            raise ExceptionGroup("outer", [ExceptionGroup("inner", [KeyError("deep")])])
    assert "__notes__" not in vars(plain.value)
    async with tractor.trionics.collapse_eg():
        pass  # no exception, nothing to do


async def test_collapse_eg_bp_names_the_non_goal() -> None:
    with pytest.raises(NotImplementedError, match="debugger"):
        async with tractor.trionics.collapse_eg(bp=True):
            pass


def test_get_collapsed_eg() -> None:
    leaf = ValueError("x")
    assert tractor.trionics.get_collapsed_eg(ExceptionGroup("g", [leaf])) is leaf
    nested = BaseExceptionGroup("o", [BaseExceptionGroup("i", [KeyboardInterrupt()])])
    assert isinstance(tractor.trionics.get_collapsed_eg(nested), KeyboardInterrupt)
    several = ExceptionGroup("g", [ValueError("a"), ValueError("b")])
    assert tractor.trionics.get_collapsed_eg(several) is None
    one_group_of_two = ExceptionGroup("o", [several])
    assert tractor.trionics.get_collapsed_eg(one_group_of_two) is None


# -- is_multi_cancelled ----------------------------------------------------------------------


async def test_is_multi_cancelled() -> None:
    cancelled = await _cancelled_group()
    matched = tractor.trionics.is_multi_cancelled(cancelled)
    assert matched is not False
    assert matched.exceptions and all(isinstance(e, trio.Cancelled) for e in matched.exceptions)
    assert tractor.trionics.is_multi_cancelled(ExceptionGroup("g", [ValueError()])) is False
    assert tractor.trionics.is_multi_cancelled(ValueError()) is False
    assert tractor.trionics.is_multi_cancelled(cancelled.exceptions[0]) is False
    mixed = BaseExceptionGroup("m", [ValueError(), BaseExceptionGroup("c", [KeyboardInterrupt()])])
    assert tractor.trionics.is_multi_cancelled(mixed) is False
    only_kbi = tractor.trionics.is_multi_cancelled(mixed, ignore_nested={KeyboardInterrupt})
    assert only_kbi is not False
    assert isinstance(only_kbi.exceptions[0], BaseExceptionGroup)
    assert isinstance(only_kbi.exceptions[0].exceptions[0], KeyboardInterrupt)


# -- maybe_open_nursery ----------------------------------------------------------------------


async def test_maybe_open_nursery() -> None:
    done = trio.Event()

    async def finish() -> None:
        await trio.lowlevel.checkpoint()
        done.set()

    async with tractor.trionics.maybe_open_nursery() as opened:
        assert isinstance(opened, trio.Nursery)
        assert not opened.cancel_scope.shield
        opened.start_soon(finish)
    assert done.is_set()  # a nursery opened here is waited for
    async with trio.open_nursery() as outer:
        async with tractor.trionics.maybe_open_nursery(outer) as given:
            assert given is outer
        outer.cancel_scope.cancel()
    async with tractor.trionics.maybe_open_nursery(shield=True) as shielded:
        assert shielded.cancel_scope.shield


async def test_maybe_open_nursery_with_the_actor_runtime(reg_addr: tractor.TCPAddress) -> None:
    with trio.fail_after(20):
        async with tractor.trionics.maybe_open_nursery(
            lib=tractor, registry_addrs=[reg_addr]
        ) as an:
            assert isinstance(an, tractor.ActorNursery)
    assert tractor.current_actor(err_on_no_runtime=False) is None


# -- gather_contexts -------------------------------------------------------------------------


async def test_gather_contexts_enters_concurrently_and_exits_all() -> None:
    entered: list[int] = []
    exited: list[int] = []
    ready = [trio.Event() for _ in range(3)]

    @asynccontextmanager
    async def resource(i: int) -> AsyncIterator[str]:
        ready[i].set()
        # each waits for all: only concurrent entry gets past this
        for event in ready:
            await event.wait()
        entered.append(i)
        try:
            yield f"value-{i}"
        finally:
            exited.append(i)

    with trio.fail_after(5):
        async with tractor.trionics.gather_contexts([resource(i) for i in range(3)]) as values:
            assert values == ("value-0", "value-1", "value-2")
            assert sorted(entered) == [0, 1, 2]
            assert exited == []
    assert sorted(exited) == [0, 1, 2]


async def test_gather_contexts_failure_and_errors() -> None:
    exited: list[str] = []

    @asynccontextmanager
    async def good() -> AsyncIterator[str]:
        try:
            yield "ok"
        finally:
            exited.append("good")

    @asynccontextmanager
    async def bad(fail: bool = True) -> AsyncIterator[str]:
        await trio.lowlevel.checkpoint()
        if fail:
            raise OSError("cannot open")
        yield "never"

    with trio.fail_after(5):
        with pytest.raises(OSError, match="cannot open"):
            async with tractor.trionics.collapse_eg():
                async with tractor.trionics.gather_contexts([good(), bad()]):
                    raise AssertionError("the block must not run")
        assert exited == ["good"]
        exited.clear()
        with pytest.raises(KeyError):
            async with tractor.trionics.collapse_eg():
                async with tractor.trionics.gather_contexts([good(), good()]):
                    raise KeyError("from the block")
        assert exited == ["good", "good"]
    with pytest.raises(ValueError, match="at least one"):
        async with tractor.trionics.gather_contexts([]):
            pass


# -- maybe_open_context ----------------------------------------------------------------------


class Counted:
    """An async context manager factory that counts its entries and exits."""

    def __init__(self) -> None:
        self.entered = 0
        self.exited = 0
        self.fail_exit = False

    @asynccontextmanager
    async def open(self, name: str = "r") -> AsyncIterator[str]:
        self.entered += 1
        await trio.lowlevel.checkpoint()
        try:
            yield f"{name}-{self.entered}"
        finally:
            self.exited += 1
            if self.fail_exit:
                raise OSError("exit failed")


async def test_maybe_open_context_shares_one_entry_among_tasks(
    reg_addr: tractor.TCPAddress,
) -> None:
    res = Counted()
    seen: list[tuple[bool, str]] = []
    all_in = trio.Event()

    async def user() -> None:
        async with tractor.trionics.maybe_open_context(res.open, kwargs={"name": "a"}) as got:
            seen.append(got)
            if len(seen) == 3:
                all_in.set()
            await all_in.wait()

    with trio.fail_after(20):
        # the running actor's service nursery holds the shared context
        async with tractor.open_root_actor(registry_addrs=[reg_addr]):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(user)
            assert sorted(seen) == [(False, "a-1"), (True, "a-1"), (True, "a-1")]
            assert (res.entered, res.exited) == (1, 1)
            # fully released: the next user opens it afresh
            async with tractor.trionics.maybe_open_context(res.open, kwargs={"name": "a"}) as got:
                assert got == (False, "a-2")
            assert (res.entered, res.exited) == (2, 2)


async def test_maybe_open_context_keys_and_errors() -> None:
    res = Counted()
    async with trio.open_nursery() as tn:
        async with (
            tractor.trionics.maybe_open_context(res.open, {"name": "a"}, tn=tn) as a,
            tractor.trionics.maybe_open_context(res.open, {"name": "b"}, tn=tn) as b,
            tractor.trionics.maybe_open_context(
                res.open, {"name": "c"}, key=lambda name: "same", tn=tn
            ) as c,
            tractor.trionics.maybe_open_context(
                res.open, {"name": "d"}, key=lambda name: "same", tn=tn
            ) as d,
            tractor.trionics.maybe_open_context(res.open, {"name": "e"}, key="k", tn=tn) as e,
        ):
            assert a == (False, "a-1") and b == (False, "b-2")
            assert c == (False, "c-3") and d == (True, "c-3")
            assert e == (False, "e-4")
        assert res.exited == 4
        # an error leaving the context reaches its last user
        res.fail_exit = True
        with pytest.raises(OSError, match="exit failed"):
            async with tractor.trionics.maybe_open_context(res.open, tn=tn):
                pass

        # an error entering it reaches the user, and nothing stays cached
        @asynccontextmanager
        async def refuses(fail: bool = True) -> AsyncIterator[int]:
            await trio.lowlevel.checkpoint()
            if fail:
                raise ConnectionRefusedError("no")
            yield 1

        for _ in range(2):
            with pytest.raises(ConnectionRefusedError):
                async with tractor.trionics.maybe_open_context(refuses, tn=tn):
                    raise AssertionError("the block must not run")
    with pytest.raises(RuntimeError, match="no tractor_reg actor"):
        async with tractor.trionics.maybe_open_context(res.open):
            pass


# -- open_actor_cluster ----------------------------------------------------------------------


async def test_actor_cluster_starts_count_actors_and_cancels_them(
    reg_addr: tractor.TCPAddress,
) -> None:
    with trio.fail_after(40):
        async with tractor.open_actor_cluster(
            modules=[TARGETS], count=3, registry_addrs=[reg_addr]
        ) as portals:
            root = tractor.current_actor().name
            assert sorted(portals) == [f"{root}.worker_{i}" for i in range(3)]
            answers = {name: await p.run(logtrio.identity) for name, p in portals.items()}
            for name, (actor_name, _pid) in answers.items():
                assert actor_name == name
            pids = [pid for _name, pid in answers.values()]
            assert len(set(pids)) == 3
    for pid in pids:
        wait_gone(pid)


async def test_actor_cluster_tears_down_on_keyboard_interrupt(
    reg_addr: tractor.TCPAddress,
) -> None:
    """quick_cluster.py's shape: work in every actor, then Ctrl-C raised in the block."""
    pids: list[int] = []
    with trio.fail_after(40):
        with pytest.raises(KeyboardInterrupt):
            async with (
                tractor.open_actor_cluster(
                    modules=[TARGETS, "tests.rpc_targets.funcs"],
                    names=["a", "b"],
                    registry_addrs=[reg_addr],
                ) as portals,
                tractor.trionics.collapse_eg(),
                trio.open_nursery() as tn,
            ):
                assert len(portals) == 2
                for portal in portals.values():
                    pids.append((await portal.run(logtrio.identity))[1])
                    tn.start_soon(portal.run, funcs.sleep_forever)
                raise KeyboardInterrupt
    assert len(pids) == 2
    for pid in pids:
        wait_gone(pid)
    assert not any(pid_alive(pid) for pid in pids)
    assert tractor.current_actor(err_on_no_runtime=False) is None


async def test_actor_cluster_hard_kill_and_inside_a_running_root(
    reg_addr: tractor.TCPAddress,
) -> None:
    with trio.fail_after(40):
        async with tractor.open_root_actor(registry_addrs=[reg_addr], name="lt_boss"):
            async with tractor.open_actor_cluster(
                modules=[TARGETS], names=["only"], hard_kill=True
            ) as portals:
                assert list(portals) == ["lt_boss.only"]
                pid = (await portals["lt_boss.only"].run(logtrio.identity))[1]
            wait_gone(pid)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"modules": [TARGETS], "count": 2, "names": ["a"]}, ValueError, "1 names"),
        ({"modules": [TARGETS], "names": ["a", "a"]}, ValueError, "distinct"),
        ({"modules": [TARGETS], "count": 0}, ValueError, "count >= 1"),
        ({"modules": TARGETS, "count": 1}, TypeError, "not a str"),
    ],
)
async def test_actor_cluster_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        async with tractor.open_actor_cluster(**kwargs):  # type: ignore[arg-type]
            raise AssertionError("the block must not run")
    assert tractor.current_actor(err_on_no_runtime=False) is None


# -- maybe_raise_from_masking_exc --------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def trionics_log() -> Iterator[_Collect]:
    """Records of the ``tractor_reg.trionics`` logger, at every level."""
    logger = logging.getLogger("tractor_reg.trionics")
    sink = _Collect()
    saved = logger.level
    logger.addHandler(sink)
    logger.setLevel(1)
    yield sink
    logger.removeHandler(sink)
    logger.setLevel(saved)


async def _masked_in_finally(exc: BaseException, outer: trio.CancelScope) -> None:
    """Raise ``exc``, then checkpoint in ``finally`` while ``outer`` is cancelled."""
    outer.cancel()
    try:
        raise exc
    finally:
        await trio.lowlevel.checkpoint()


async def test_masking_exc_is_unmasked(trionics_log: _Collect) -> None:
    with trio.CancelScope() as outer:
        with pytest.raises(ValueError, match="hidden") as info:
            async with tractor.trionics.maybe_raise_from_masking_exc() as box:
                await _masked_in_finally(ValueError("hidden"), outer)
    assert isinstance(info.value.__cause__, trio.Cancelled)
    assert box.value is info.value.__cause__
    assert any("was masked by a Cancelled" in note for note in info.value.__notes__)
    assert any("unshielded checkpoint" in note for note in info.value.__notes__)
    warned = [r.getMessage() for r in trionics_log.records if r.levelno == logging.WARNING]
    assert any("ValueError: hidden" in message for message in warned)


async def test_masking_exc_without_the_helper_is_lost() -> None:
    # what the helper is for: the outer scope swallows the Cancelled and the error
    with trio.CancelScope() as outer:
        await _masked_in_finally(ValueError("hidden"), outer)
    assert outer.cancelled_caught


async def test_masking_exc_in_a_group() -> None:
    with trio.CancelScope() as outer:
        with pytest.raises(KeyError, match="in-task"):
            async with (
                tractor.trionics.maybe_raise_from_masking_exc(),
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(_masked_in_finally, KeyError("in-task"), outer)
                await trio.sleep_forever()


async def test_masking_exc_raise_unmasked_false_only_notes() -> None:
    with trio.CancelScope() as outer:
        async with tractor.trionics.maybe_raise_from_masking_exc(raise_unmasked=False) as box:
            await _masked_in_finally(ValueError("hidden"), outer)
    assert outer.cancelled_caught
    assert isinstance(box.value, trio.Cancelled)
    masked = box.value.__context__
    assert isinstance(masked, ValueError)
    assert any("was masked by a Cancelled" in note for note in masked.__notes__)


async def test_masking_exc_never_warn_pair_is_unmasked_without_note(
    trionics_log: _Collect,
) -> None:
    with trio.CancelScope() as outer:
        with pytest.raises(KeyboardInterrupt) as info:
            async with tractor.trionics.maybe_raise_from_masking_exc():
                await _masked_in_finally(KeyboardInterrupt(), outer)
    assert not getattr(info.value, "__notes__", [])
    assert not trionics_log.records


async def test_masking_exc_leaves_unmasked_and_unrelated_errors_alone() -> None:
    with pytest.raises(ValueError, match="plain") as info:
        async with tractor.trionics.maybe_raise_from_masking_exc():
            raise ValueError("plain")
    assert info.value.__cause__ is None
    with trio.CancelScope() as outer:
        async with tractor.trionics.maybe_raise_from_masking_exc() as box:
            outer.cancel()
            await trio.lowlevel.checkpoint()
    assert outer.cancelled_caught and box.value is None


async def test_masking_exc_ignores_trios_own_lock_masking(trionics_log: _Collect) -> None:
    lock = trio.Lock()
    release = trio.Event()

    async def hold(task_status: trio.TaskStatus[None]) -> None:
        async with lock:
            task_status.started()
            await release.wait()

    async def cancel_when_parked(outer: trio.CancelScope) -> None:
        await trio.testing.wait_all_tasks_blocked()
        assert lock.statistics().tasks_waiting == 1
        outer.cancel()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(hold)
            with trio.CancelScope() as outer:
                nursery.start_soon(cancel_when_parked, outer)
                async with tractor.trionics.maybe_raise_from_masking_exc():
                    await lock.acquire()  # parks inside Lock.acquire's `except WouldBlock:`
            release.set()
    assert outer.cancelled_caught
    assert any("Lock.acquire()" in r.getMessage() for r in trionics_log.records)


@pytest.mark.parametrize("bad", [trio.Cancelled, [trio.Cancelled], (ValueError, "x")])
async def test_masking_exc_refuses_a_bad_unmask_from(bad: object) -> None:
    with pytest.raises(ValueError, match="tuple of exception types"):
        async with tractor.trionics.maybe_raise_from_masking_exc(unmask_from=bad):  # type: ignore[arg-type]
            pass


# -- start_or_cancel -------------------------------------------------------------------------


async def _returns_early(outer: trio.CancelScope | None, task_status: Any = None) -> None:
    if outer is not None:
        outer.cancel()


async def test_start_or_cancel_surfaces_the_cancellation() -> None:
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as outer:
            await tractor.trionics.start_or_cancel(nursery, _returns_early, outer)
            raise AssertionError("not reached")
        assert outer.cancelled_caught
        # plain Nursery.start() hides the same cancellation behind a RuntimeError
        with trio.CancelScope() as outer:
            with pytest.raises(RuntimeError, match="without calling"):
                await nursery.start(_returns_early, outer)


async def test_start_or_cancel_keeps_startup_bugs_and_values() -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(RuntimeError, match=r"without calling task_status\.started"):
            await tractor.trionics.start_or_cancel(nursery, _returns_early, None)

        async def own_error(task_status: trio.TaskStatus[None]) -> None:
            raise RuntimeError("started badly")

        with trio.CancelScope() as outer:
            outer.cancel()
            with pytest.raises(RuntimeError, match="started badly"):
                await tractor.trionics.start_or_cancel(nursery, own_error)

        async def serve(value: int, task_status: trio.TaskStatus[int]) -> None:
            task_status.started(value * 2)

        assert await tractor.trionics.start_or_cancel(nursery, serve, 21, name="lt") == 42


# -- supervise_run_process -------------------------------------------------------------------


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_supervise_run_process_relays_lines(trionics_log: _Collect) -> None:
    code = (
        "import sys; print('out one'); print('in=' + repr(sys.stdin.read()));"
        "sys.stderr.write('err one\\r\\npartial'); sys.stdout.write('no newline')"
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                partial(
                    tractor.trionics.supervise_run_process,
                    _py(code),
                    relay_stdout=True,
                    relay_stderr=True,
                    label="lt",
                )
            )
            assert isinstance(proc, trio.Process) and proc.pid > 0
    assert proc.returncode == 0
    got = {(r.levelname, r.getMessage()) for r in trionics_log.records}
    assert got == {
        ("IO", "[lt:out] out one"),
        ("IO", "[lt:out] in=''"),  # stdin is /dev/null
        ("IO", "[lt:out] no newline"),
        ("IO", "[lt:err] err one"),
        ("IO", "[lt:err] partial"),
    }


async def test_supervise_run_process_default_label_and_level(trionics_log: _Collect) -> None:
    cmd = _py("print('x')")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    tractor.trionics.supervise_run_process,
                    cmd,
                    relay_stdout=True,
                    relay_level="CANCEL",
                )
            )
    assert [(r.levelname, r.getMessage()) for r in trionics_log.records] == [
        ("CANCEL", f"[{' '.join(cmd)}:out] x")
    ]


async def test_supervise_run_process_quiet_by_default(
    trionics_log: _Collect, capfd: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                tractor.trionics.supervise_run_process,
                _py("import sys; print('lt-stdout'); sys.stderr.write('lt-stderr')"),
            )
    out, err = capfd.readouterr()
    assert "lt-stdout" not in out + err and "lt-stderr" not in out + err
    assert not trionics_log.records


async def test_supervise_run_process_failure_carries_stderr_tail() -> None:
    code = "import sys; sys.stderr.write('x' * 100000 + 'lt-last-words'); sys.exit(3)"
    with trio.fail_after(20):
        with pytest.raises(subprocess.CalledProcessError) as info:
            async with tractor.trionics.collapse_eg(), trio.open_nursery() as nursery:
                await nursery.start(tractor.trionics.supervise_run_process, _py(code))
    failed = info.value
    assert failed.returncode == 3
    assert failed.stderr.endswith(b"lt-last-words")
    assert len(failed.stderr) == 16 * 1024  # the tail only, after 100 kB were drained
    assert any("lt-last-words" in note for note in failed.__notes__)
    # check=False: the exit status is the caller's business
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                partial(tractor.trionics.supervise_run_process, _py(code), check=False)
            )
    assert proc.returncode == 3


async def test_supervise_run_process_passes_options_and_stdout(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with target.open("wb") as sink, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    tractor.trionics.supervise_run_process,
                    "echo $LT_VALUE; pwd",
                    shell=True,
                    cwd=str(tmp_path),
                    env={"LT_VALUE": "lt-env", "PATH": "/usr/bin:/bin"},
                    stdout=sink,
                )
            )
    assert target.read_text().split() == ["lt-env", str(tmp_path)]


async def test_supervise_run_process_cancel_kills_the_process() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                tractor.trionics.supervise_run_process, _py("import time; time.sleep(60)")
            )
            assert pid_alive(proc.pid)
            nursery.cancel_scope.cancel()
    assert proc.returncode is not None and proc.returncode < 0
    wait_gone(proc.pid)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stdout": subprocess.PIPE}, "relay_stdout=True"),
        ({"capture_stdout": True}, "sets capture_stdout= itself"),
        ({"capture_stderr": True}, "sets capture_stderr= itself"),
        ({"stderr": subprocess.DEVNULL}, "sets stderr= itself"),
        ({"stdin": subprocess.PIPE}, "sets stdin= itself"),
        ({"relay_stderr": True, "relay_level": "loud"}, "unknown log level 'loud'"),
    ],
)
async def test_supervise_run_process_refuses_bad_options(
    kwargs: dict[str, Any], message: str
) -> None:
    with trio.fail_after(20):
        with pytest.raises(ValueError, match=message):
            async with tractor.trionics.collapse_eg(), trio.open_nursery() as nursery:
                await nursery.start(
                    partial(tractor.trionics.supervise_run_process, _py("pass"), **kwargs)
                )


async def test_supervise_run_process_bad_level_without_relay_is_fine() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                partial(tractor.trionics.supervise_run_process, _py("pass"), relay_level="loud")
            )
    assert proc.returncode == 0


async def test_supervise_run_process_missing_program() -> None:
    with trio.fail_after(20):
        with pytest.raises(FileNotFoundError):
            async with tractor.trionics.collapse_eg(), trio.open_nursery() as nursery:
                await nursery.start(
                    tractor.trionics.supervise_run_process, ["/nonexistent/lt-program"]
                )


# -- broadcast receivers: streaming, a non-goal ------------------------------------------------


def test_broadcast_names_exist_and_refuse() -> None:
    from tractor_reg.trionics import AsyncReceiver, BroadcastReceiver, Lagged, broadcast_receiver

    _send, recv = trio.open_memory_channel[int](1)
    for make in (
        lambda: broadcast_receiver(recv, 10),
        lambda: BroadcastReceiver(recv),
        lambda: AsyncReceiver(),
        lambda: Lagged("behind"),
    ):
        with pytest.raises(tractor.NonGoalError, match="streaming") as info:
            make()
        assert isinstance(info.value, NotImplementedError)
        assert info.value.non_goal == "streaming and contexts"
    assert issubclass(Lagged, trio.TooSlowError)
    # an `except Lagged:` clause is harmless
    try:
        raise trio.TooSlowError
    except Lagged:
        raise AssertionError("not a Lagged") from None
    except trio.TooSlowError:
        pass
