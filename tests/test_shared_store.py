"""Two registrar processes over one shared store, SQLite or Redis: what must hold for both.

Each test runs once per store (:data:`STORES`; the storm test over :data:`STORM_STORES`):
a real SQLite file of the test's own, or a real ``redis-server`` of the test's own with a
namespace of its own. The registrars are real ``python -m tractor_reg serve`` processes on
different ports, the actors real joiner processes (:mod:`tests.rpc_targets.joiner`);
lookups go through the registrars' endpoints, from raw protocol clients that never
register (:func:`tests.procs.reader`) or from an in-test root actor. Crashes are SIGKILL.

What only one backend has (SQLite's ``PRAGMA integrity_check``, its change rows, Redis
outages) stays in :mod:`tests.test_sqlite_registrar` and :mod:`tests.test_redis_registrar`.
"""

from __future__ import annotations

import os
import select
import signal
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest
import trio

import tractor_reg
from tests.procs import (
    Proc,
    always,
    ask,
    await_joiner,
    check_integrity,
    equals,
    eventually,
    integrity,
    joiner_argv,
    joiner_ready,
    new_addr,
    python,
    reader,
    registrars,
    serve_argv,
    spawn,
    sqlite_url,
    stderr_tails,
    uids_in,
    uids_of,
    view_of,
    wait_ready,
)
from tests.redis_servers import REDIS_SERVER, RedisServer, redis_server, redis_url
from tests.rpc_targets.funcs import whoami
from tests.rpc_targets.hostile import RawPeer, client
from tractor_reg._msg import Error

# -- the stores -----------------------------------------------------------------------------

SQLITE = pytest.mark.sqlite
REDIS = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

#: A store to run over: its kind and the registrars' URL options beyond the defaults.
StoreSpec = tuple[Literal["sqlite", "redis"], dict[str, str]]

STORES = [
    pytest.param(("sqlite", {}), marks=SQLITE, id="sqlite"),
    pytest.param(("redis", {}), marks=REDIS, id="redis"),
]


@dataclass
class Store:
    """The store the registrars of one test share: how they reach it and how it is checked."""

    kind: Literal["sqlite", "redis"]
    options: dict[str, str] = field(default_factory=dict)
    db: Path | None = None
    server: RedisServer | None = None
    namespace: str = ""

    def url(self) -> str:
        if self.kind == "sqlite":
            assert self.db is not None
            return sqlite_url(self.db, **self.options)
        assert self.server is not None
        return redis_url(self.server, self.namespace, **self.options)

    def integrity(self) -> str:
        """The store's own consistency check: ``"ok"`` when it passes."""
        if self.kind == "sqlite":
            assert self.db is not None
            return integrity(self.db)
        # Redis has no check of a namespace short of reading its keys, which tests must
        # not do; a torn write shows in the entries a test reads through a registrar.
        return "ok"

    def limit(self, *, sqlite: float, redis: float) -> float:
        """The bound this step has for this store: each backend keeps the one its own test
        had before the scenarios were merged, so that the merge loosened none."""
        return sqlite if self.kind == "sqlite" else redis


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    spec: StoreSpec = request.param
    kind, options = spec
    if kind == "sqlite":
        yield Store(kind, options, db=tmp_path / "reg.db")
        return
    with redis_server() as server:
        yield Store(kind, options, server=server, namespace=f"t-{uuidlib.uuid4().hex[:12]}")


def sigkill(proc: Proc) -> None:
    """SIGKILL ``proc``'s group and reap it (its pipes stay open for the drainer)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.popen.wait()


# -- a registration through one registrar is found through the other ------------------------


async def test_registration_through_one_is_found_through_the_other(store: Store) -> None:
    with registrars(store.url()) as regs:
        (a, proc_a), (b, proc_b) = regs
        with (
            spawn(joiner_argv("at-a", str(a))) as at_a,
            spawn(joiner_argv("at-b", str(b))) as at_b,
        ):
            uuid_a, addrs_a = joiner_ready(at_a)
            uuid_b, addrs_b = joiner_ready(at_b)
            with trio.fail_after(store.limit(sqlite=10, redis=15)):
                # readers, not a root: a root's own registration is a write through one of
                # them, which would bring that registrar's view up to date as a side effect
                async with reader(a, "a") as via_a, reader(b, "b") as via_b:
                    for peer, name, want in ((via_b, "at-a", addrs_a), (via_a, "at-b", addrs_b)):
                        await eventually(
                            f"{name} found through the other registrar's find_actor",
                            partial(peer.reg, "find_actor", name=name),
                            equals(want),
                            5,
                            proc_a,
                            proc_b,
                        )
                    for peer in (via_a, via_b):
                        table = await peer.reg("get_registry")
                        assert {("at-a", uuid_a), ("at-b", uuid_b)} <= uids_in(table)
                # ... and the client API, told to use only the other registrar, connects
                async with tractor_reg.open_root_actor(name="probe", registry_addrs=[a, b]):
                    for other, name, uuid in ((b, "at-a", uuid_a), (a, "at-b", uuid_b)):
                        async with tractor_reg.find_actor(
                            name, registry_addrs=[other], raise_on_none=True
                        ) as portal:
                            assert isinstance(portal, tractor_reg.Portal)
                            assert await portal.run(whoami) == [name, uuid]


# -- a wait on one registrar is woken by a registration through the other -------------------


async def test_wait_on_one_registrar_is_woken_by_a_registration_through_the_other(
    store: Store,
) -> None:
    with registrars(store.url()) as regs:
        (a, _proc_a), (b, proc_b) = regs
        with trio.fail_after(15):
            # the waiter knows only B: nothing but B following the store can wake it
            async with tractor_reg.open_root_actor(name="waiter", registry_addrs=[b]):
                woken = trio.Event()
                got: list[Any] = []

                async def wait() -> None:
                    async with tractor_reg.wait_for_actor("late", registry_addr=b) as portal:
                        got.append(await portal.run(whoami))
                    woken.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(wait)
                    assert await ask(b, "find_actor", name="late") is None
                    # registers only through A; B learns of it from the store
                    with spawn(joiner_argv("late", str(a))) as late:
                        uuid, _ = await await_joiner(late)
                        with trio.move_on_after(5):
                            await woken.wait()
                        assert woken.is_set(), (
                            "wait_for_actor on B was not woken by a registration through A; "
                            f"B stderr:\n{proc_b.stderr_tail()}"
                        )
                assert got == [["late", uuid]]


# -- "latest registered" is decided by the store revision, the same through both -----------


async def test_latest_registered_is_decided_by_the_store_revision(store: Store) -> None:
    """x1 through A, then x2 through B: both answer x2; then x1 registers again through B,
    x2 through A and x1 through A: each time both answer the one registered last."""
    with registrars(store.url()) as regs:
        (a, proc_a), (b, proc_b) = regs
        procs = (proc_a, proc_b)
        with trio.fail_after(store.limit(sqlite=12, redis=15)):
            # the root registers (through A) before any x does, so that its own write is
            # never what brings A's view of the x's up to date
            async with (
                tractor_reg.open_root_actor(name="probe", registry_addrs=[a, b]),
                reader(a, "a") as via_a,
                reader(b, "b") as via_b,
            ):
                uuid_of: dict[str, str] = {}
                addrs_of: dict[str, list[list[Any]]] = {}
                revisions: list[int] = []

                async def revision_at(peer: RawPeer, key: str) -> int:
                    entries = await peer.reg("list_entries")
                    return next(
                        int(e["revision"])
                        for e in entries
                        if (e["name"], e["uuid"]) == ("x", uuid_of[key])
                    )

                async def latest_through_both(key: str, at: tractor_reg.TCPAddress) -> None:
                    others = [["x", uuid] for k, uuid in uuid_of.items() if k != key]
                    want = [["x", uuid_of[key]], *others]
                    for peer in (via_a, via_b):
                        await eventually(
                            f"{key} (registered through {at}) as the latest 'x' through both",
                            partial(peer.reg, "find_actors", name="x"),
                            lambda found: (
                                [e["uid"] for e in found] == want
                                and found[0]["addrs"] == addrs_of[key]
                            ),
                            5,
                            *procs,
                        )
                        assert await peer.reg("find_actor", name="x") == addrs_of[key]
                    for reg in (a, b):
                        async with tractor_reg.find_actor(
                            "x", registry_addrs=[reg], raise_on_none=True
                        ) as portal:
                            assert isinstance(portal, tractor_reg.Portal)
                            assert await portal.run(whoami) == ["x", uuid_of[key]]
                    views = [view_of(await p.reg("list_entries")) for p in (via_a, via_b)]
                    assert views[0] == views[1]

                token_of: dict[str, bytes] = {}
                with spawn([*joiner_argv("x", str(a)), "--print-token"]) as x1:
                    token_of["x1"] = bytes.fromhex((await x1.await_line("TOKEN")).split()[1])
                    uuid_of["x1"], addrs_of["x1"] = await await_joiner(x1)
                    revisions.append(await revision_at(via_a, "x1"))
                    await latest_through_both("x1", a)
                    with spawn([*joiner_argv("x", str(b)), "--print-token"]) as x2:
                        token_of["x2"] = bytes.fromhex((await x2.await_line("TOKEN")).split()[1])
                        uuid_of["x2"], addrs_of["x2"] = await await_joiner(x2)
                        revisions.append(await revision_at(via_b, "x2"))
                        await latest_through_both("x2", b)
                        assert addrs_of["x1"] != addrs_of["x2"]
                        # a registration again of a uid already there (by its owner,
                        # with its lease token) moves it to the front
                        for key, at in (("x1", b), ("x2", a), ("x1", a)):
                            async with client(at, "x", uuid_of[key]) as me:
                                answer = await me.reg(
                                    "register_actor",
                                    uid=["x", uuid_of[key]],
                                    addr=addrs_of[key],
                                    ttl=60,
                                    token=token_of[key],
                                )
                            revisions.append(answer["revision"])
                            await latest_through_both(key, at)
                        # one store revision sequence, whichever registrar wrote
                        assert revisions == sorted(set(revisions)), revisions


# -- SIGKILL one registrar: clients fail over to the other ---------------------------------


async def test_sigkill_one_registrar_and_clients_fail_over_to_the_other(store: Store) -> None:
    ttl, renew = 1.5, 0.3
    # short registrar leases: the dead registrar's own entry must end too
    with registrars(store.url(), lease_ttl=2.0) as regs:
        (a, proc_a), (b, proc_b) = regs
        with spawn(joiner_argv("svc", str(a), str(b), ttl=ttl, renew=renew)) as svc:
            svc_uuid, svc_addrs = joiner_ready(svc)
            with trio.fail_after(store.limit(sqlite=15, redis=20)):
                async with tractor_reg.open_root_actor(
                    name="client", registry_addrs=[a, b], lease_ttl=ttl, renew_interval=renew
                ) as me:

                    async def registrar_of() -> dict[str, str]:
                        entries = await ask(b, "list_entries")
                        return {
                            e["name"]: e["registrar"]
                            for e in entries
                            if (e["name"], e["uuid"]) in {("svc", svc_uuid), me.uid}
                        }

                    # both registered through A (first in their lists); B sees them
                    before = await eventually(
                        "svc and client registered through A, seen through B",
                        registrar_of,
                        lambda regs: len(regs) == 2,
                        5,
                        proc_a,
                        proc_b,
                    )
                    assert all(r.endswith(str(a)) for r in before.values()), before

                    await trio.to_thread.run_sync(sigkill, proc_a)

                    woken = {"during": trio.Event(), "after": trio.Event()}
                    got: dict[str, Any] = {}

                    async def wait(when: str, registry_addr: list[Any] | None) -> None:
                        async with tractor_reg.wait_for_actor(
                            "late", registry_addr=registry_addr
                        ) as portal:
                            got[when] = await portal.run(whoami)
                        woken[when].set()

                    async with trio.open_nursery() as nursery:
                        # svc's lease (1.5 s) survives A: its renewals fail over to B, and
                        # B finds it at every instant of twice its lease from the kill on
                        nursery.start_soon(
                            always,
                            "svc found through B after A died",
                            lambda: ask(b, "find_actor", name="svc"),
                            equals(svc_addrs),
                            2 * ttl,
                            proc_b,
                            svc,
                        )

                        # lookups carry on through B, through the root's own registry list
                        # and through the same [A, B] list given explicitly
                        for registry_addrs in (None, [a, b]):
                            async with tractor_reg.find_actor(
                                "svc", registry_addrs=registry_addrs, raise_on_none=True
                            ) as found:
                                assert isinstance(found, tractor_reg.Portal)
                                assert await found.run(whoami) == ["svc", svc_uuid]

                        # a wait begun while the leases are still failing over ...
                        nursery.start_soon(wait, "during", [a, b])

                        # renewals fail over: svc and this root now hold leases through B
                        await eventually(
                            "svc and client re-registered through B",
                            registrar_of,
                            lambda regs: (
                                len(regs) == 2 and all(r.endswith(str(b)) for r in regs.values())
                            ),
                            5,
                            proc_b,
                        )

                        # ... and one begun after, through the root's own registry list
                        nursery.start_soon(wait, "after", None)
                        late_argv = joiner_argv("late", str(a), str(b), ttl=ttl, renew=renew)
                        with spawn(late_argv) as late:
                            late_uuid, late_addrs = await await_joiner(late)
                            with trio.move_on_after(store.limit(sqlite=5, redis=8)):
                                for event in woken.values():
                                    await event.wait()
                            asleep = [w for w, e in woken.items() if not e.is_set()]
                            assert not asleep, (
                                f"wait_for_actor begun {' and '.join(asleep)} the failover was "
                                "not woken by a registration made after A died"
                                f"{stderr_tails((proc_b, late))}"
                            )
                            assert got == {w: ["late", late_uuid] for w in woken}

                            entries = await ask(b, "list_entries")
                            late_entry = [e for e in entries if e["name"] == "late"]
                            assert [e["registrar"][-len(str(b)) :] for e in late_entry] == [str(b)]

                            # the survivor lists exactly the live actors, each once; the
                            # dead registrar's own entry ends with its lease
                            live = {("svc", svc_uuid), ("late", late_uuid), me.uid}

                            def exactly_live(entries: list[dict[str, Any]]) -> bool:
                                regs = [e for e in entries if e["name"] == "reg"]
                                return uids_of(entries) == live and [
                                    e["registrar"][-len(str(b)) :] for e in regs
                                ] == [str(b)]

                            entries = await eventually(
                                "B listing exactly the live actors (and itself)",
                                lambda: ask(b, "list_entries"),
                                exactly_live,
                                8,
                                proc_b,
                            )
                            check_integrity(entries)
                            by_uid = {(e["name"], e["uuid"]): e["addrs"] for e in entries}
                            assert by_uid[("svc", svc_uuid)] == svc_addrs
                            assert by_uid[("late", late_uuid)] == late_addrs
                    # (the nursery waited out svc's whole observation window)
            assert proc_b.popen.poll() is None, proc_b.stderr_tail()


# -- SIGKILL of a registrar in a registration storm ------------------------------------------

STORM_COUNT = 40_000  # far more than get acknowledged before the kill: the storm is ongoing
STORM_KILL_AFTER = 200

STORM_STORES = [
    pytest.param(("sqlite", {"synchronous": "normal"}), marks=SQLITE, id="sqlite-normal"),
    pytest.param(("sqlite", {"synchronous": "full"}), marks=SQLITE, id="sqlite-full"),
    # 64 writers at once keep Redis busy: replies may take longer than the 0.5 s the other
    # tests allow, and a timed-out write would be refused, not lost
    pytest.param(("redis", {"socket_timeout": "2"}), marks=REDIS, id="redis"),
]


def storm_argv(addr: tractor_reg.TCPAddress) -> list[str]:
    return python(
        "-m",
        "tests.rpc_targets.storm",
        str(addr),
        "--count",
        str(STORM_COUNT),
        "--concurrency",
        "64",
    )


class StdoutLines:
    """Every stdout line of a process, read straight from its pipe (nothing is missed)."""

    def __init__(self, proc: Proc) -> None:
        assert proc.popen.stdout is not None
        self.proc = proc
        self.fd = proc.popen.stdout.fileno()
        self.lines: list[str] = []
        self.eof = False
        self._partial = b""

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            chunk = b"\n" if self._partial else b""
        self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        self.lines.extend(c.decode() for c in complete)

    def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                raise AssertionError(
                    f"{what}: not within {timeout}s (eof={self.eof}, exit code "
                    f"{self.proc.popen.poll()}); last lines {self.lines[-5:]!r}; stderr tail:\n"
                    f"{self.proc.stderr_tail()}"
                )
            self._read(min(left, 0.5))

    def to_eof(self, timeout: float) -> bool:
        """Read until EOF; ``False`` if the process kept its stdout open past ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._read(min(left, 0.5))
        return True

    def acked(self) -> set[str]:
        return {line.split()[1] for line in self.lines if line.startswith("ACK ")}


@pytest.mark.parametrize("store", STORM_STORES, indirect=True)
async def test_sigkill_in_a_storm_loses_no_acknowledged_registration(store: Store) -> None:
    """A registration is acknowledged only once the store has it: killing the registrar
    mid-storm loses nothing acknowledged, and a new registrar serves every one of them."""
    addr = new_addr()
    argv = serve_argv(store.url(), addr)
    with spawn(argv) as victim:
        wait_ready(victim)
        with spawn(storm_argv(addr)) as storm:
            out = StdoutLines(storm)
            out.until(
                lambda: len(out.acked()) >= STORM_KILL_AFTER,
                15,
                f"{STORM_KILL_AFTER} acknowledged registrations",
            )
            os.kill(victim.pid, signal.SIGKILL)  # mid-storm: the workers have calls in flight
            victim.wait(10)
            # every ACK the storm printed must be read: to EOF (it fails once the
            # registrar is gone; if it lingers, killing it closes its stdout)
            if not out.to_eof(10):
                storm.kill_group()
                assert out.to_eof(10), "the storm's stdout did not close after a SIGKILL"
            acked = out.acked()
            assert not [line for line in out.lines if line.startswith(("ERR", "DONE"))], (
                "the registrar refused a registration, or the storm ended before the kill: "
                f"{[line for line in out.lines if not line.startswith('ACK')]!r}"
            )
    assert store.integrity() == "ok"
    with spawn(argv) as reborn:
        wait_ready(reborn)
        with trio.fail_after(store.limit(sqlite=10, redis=15)):
            async with reader(addr, "after") as peer:
                entries = await peer.reg("list_entries")
    stored = {e["uuid"]: e["addrs"] for e in entries if e["name"] == "storm"}
    lost = acked - stored.keys()
    assert not lost, (
        f"{len(lost)} of {len(acked)} acknowledged registrations are missing after the crash "
        f"(e.g. {sorted(lost, key=int)[:10]}); {len(stored)} stored; registrar stderr:\n"
        f"{reborn.stderr_tail()}"
    )
    # ... with the registered address (committed writes are whole, not torn)
    for uuid in acked:
        assert stored[uuid] == [["127.0.0.1", 20000 + int(uuid)]], (uuid, stored[uuid])
    # a committed-but-unanswered write may be there too, never an unknown uid
    assert all(0 <= int(uuid) < STORM_COUNT for uuid in stored)
    assert store.integrity() == "ok"


# -- a registration is owned by its lease token, whichever registrar issued it ------------------


async def test_a_lease_token_from_one_registrar_is_honoured_by_the_other(store: Store) -> None:
    """Registrars sharing a store keep only the token's hash in it, so each verifies the
    tokens the other issued: the owner renews, changes and unregisters through B what it
    registered through A, and a forged token is refused by both."""
    forged = bytes(32)
    uid = ["shared-owned", f"owned-{uuidlib.uuid4().hex[:8]}"]
    with registrars(store.url()) as regs:
        (a, proc_a), (b, proc_b) = regs
        with trio.fail_after(store.limit(sqlite=20, redis=25)):
            async with client(a, "owner", "owner-1") as at_a:
                answer = await at_a.reg("register_actor", uid=uid, addr=[["127.0.0.1", 9]])
                token = answer["token"]

            async def entry_at(reg: tractor_reg.TCPAddress) -> dict[str, Any] | None:
                async with reader(reg, "owned") as peer:
                    found = await peer.reg("list_entries")
                return next((e for e in found if e["uuid"] == uid[1]), None)

            seen = await eventually(
                "B sees the registration made through A",
                partial(entry_at, b),
                lambda e: e is not None,
                10,
                proc_a,
                proc_b,
            )
            before = (seen or {}).get("addrs"), (seen or {}).get("revision")
            for reg in (a, b):
                async with client(reg, "forger", "forger-1") as forger:
                    attempts: list[tuple[str, dict[str, Any]]] = [
                        ("renew_lease", {"uid": uid, "token": forged}),
                        ("unregister_actor", {"uid": uid, "token": forged}),
                        ("register_actor", {"uid": uid, "addr": [["127.0.0.1", 10]]}),
                        (
                            "register_actor",
                            {"uid": uid, "addr": [["127.0.0.1", 10]], "token": forged},
                        ),
                    ]
                    for func, kwargs in attempts:
                        reply = await forger.call("self", func, **kwargs)
                        assert isinstance(reply, Error), (reg, func, reply)
                        assert reply.type_name == "PermissionDenied", (reg, func, reply)
                for where in (a, b):
                    now = await entry_at(where)
                    assert now is not None and (now["addrs"], now["revision"]) == before

            # The owner, through B, with the token A issued.
            async with client(b, "owner", "owner-2") as at_b:
                assert await at_b.reg("renew_lease", uid=uid, token=token, ttl=30.0) is True
                changed = await at_b.reg(
                    "register_actor", uid=uid, addr=[["127.0.0.1", 10]], token=token
                )
                assert changed["token"] == token
            await eventually(
                "A sees the change made through B",
                partial(entry_at, a),
                lambda e: e is not None and e["addrs"] == [["127.0.0.1", 9], ["127.0.0.1", 10]],
                10,
                proc_a,
                proc_b,
            )
            async with client(b, "owner", "owner-3") as at_b:
                assert await at_b.reg("unregister_actor", uid=uid, token=token) is True
            await eventually(
                "A sees the unregistration made through B",
                partial(entry_at, a),
                lambda e: e is None,
                10,
                proc_a,
                proc_b,
            )
