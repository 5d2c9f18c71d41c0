"""Upstream ``tractor.trionics``' helpers and ``open_actor_cluster``, through the public API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

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
