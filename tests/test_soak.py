"""Soak: continuous actor churn across two registrars sharing one Redis.

Not in the default run (``-m "not soak"`` in the pytest addopts). Run it with::

    .venv/bin/python -m pytest -m soak tests/test_soak.py -p no:cacheprovider -s

``SOAK_SECONDS`` sets the duration (default 600); ``SOAK_SEED`` replays a churn sequence.

One ``redis-server`` of the test's own, two ``tractor-reg serve`` registrars A and B over
it (one namespace), and a bounded pool of joiner actors (:mod:`tests.rpc_targets.joiner`,
short leases, each listing ``[A, B]`` or ``[B, A]``). Every second the driver starts some
joiners, stops some cleanly (SIGINT: they unregister on the way out) and SIGKILLs some
(their entries must go by verified eviction or lease expiry), a few of them while they
boot and register; then it reads both registrars' ``list_entries`` concurrently through an
in-test registry client (``open_registry_client([A, B])``) and checks:

1. A and B agree on the live entries (a difference may last at most ``AGREE_GRACE``);
2. every live joiner that printed READY more than ``READY_GRACE`` ago is listed by both,
   with its uuid and addresses, and ``find_actor`` (through ``[A, B]`` or ``[B, A]``)
   reaches it: a few lookups a second, each checked with ``whoami``;
3. no entry of a joiner that was SIGKILLed (or that exited) more than
   ``ttl + purge interval + 1 s`` ago is listed, and no unknown entry is listed;
   ``find_actor`` of a dead joiner (one long dead, one just killed, each second: the
   latter makes the registrar verify and evict its address) gives ``None``;
4. each address is owned by exactly one entry;
5. no uid is listed twice;
6. a joiner stopped cleanly is gone within ``UNREGISTER_GRACE`` of its exit (it
   unregistered: no wait for its lease). ``SOAK_STRICT_UNREGISTER=0`` makes this advisory
   (it guards the fix for a dying actor's lease loop registering it again);
7. joiners stay up unless told otherwise and a SIGINT ends one within ``STOP_DEADLINE``;
8. the registrars' memory stays flat: the median RSS of the last 20 % of the samples is at
   most ``RSS_MAX_GROWTH_MIB`` and ``RSS_MAX_GROWTH_RATIO`` above the median of the
   20 %-40 % window (the first 20 % is warm-up).

Violations are collected (first occurrence of each, with details, plus a repeat count)
rather than stopping the soak at the first one; the test fails at the end listing them.
A summary of operations and invariants is printed whatever the outcome.
"""

from __future__ import annotations

import os
import random
import select
import signal
import statistics
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

import tractor_reg
from tests.conftest import free_port
from tests.procs import Proc, joiner_argv, registrar_argv
from tests.redis_servers import REDIS_SERVER, RedisServer, start_standalone
from tests.rpc_targets.funcs import whoami
from tractor_reg._registrar import DEFAULT_PURGE_INTERVAL

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))

#: Joiner processes alive at once (residents included), and how many live all along.
POOL = 12
RESIDENTS = 2
#: The joiners' leases.
TTL, RENEW = 2.0, 0.5
#: The registrars' own lease (their entry in the store they serve).
REGISTRAR_TTL = 30.0
REGISTRAR_NAME = "reg"
#: How often a registrar re-reads the change stream without a notification (s).
POLL = 0.2
#: A READY joiner must be listed/found this long after we read its READY line.
READY_GRACE = 1.0
#: A difference between A's and B's views may last this long.
AGREE_GRACE = 2.0
#: A dead joiner's entry may outlive its death by its lease + one purge + propagation.
DEAD_GRACE = TTL + DEFAULT_PURGE_INTERVAL + 1.0
#: A cleanly stopped joiner unregistered before exiting: gone this soon after its exit.
UNREGISTER_GRACE = 1.0
#: Whether a breach of (6) fails the soak (see the module docstring) or is only reported.
STRICT_UNREGISTER = os.environ.get("SOAK_STRICT_UNREGISTER", "1") != "0"
#: A SIGINTed joiner must have exited within this.
STOP_DEADLINE = 5.0
#: Lookups of live joiners through find_actor per tick (plus up to two of dead ones).
LOOKUPS_PER_TICK = 3
#: Deadline of one registrar call / one lookup.
CALL_DEADLINE = 5.0
#: Memory: allowed growth of the late RSS median over the early one (both must hold).
RSS_MAX_GROWTH_MIB = 20.0
RSS_MAX_GROWTH_RATIO = 0.25
#: Stop early after this many distinct violations (the rest would be noise).
MAX_VIOLATIONS = 40

INVARIANTS = {
    1: "A and B agree on the live entries",
    2: "every live READY joiner is listed by both and found",
    3: "no entry of a dead (or unknown) actor outlives its lease + purge",
    4: "each address is owned by exactly one entry",
    5: "no uid is listed twice",
    6: "a cleanly stopped joiner is gone at once (it unregistered)",
    7: "joiners live until told otherwise; SIGINT ends them promptly",
    8: "registrar memory stays flat",
}

Addr = tractor_reg.TCPAddress


# -- bookkeeping ----------------------------------------------------------------------------


@dataclass
class Joiner:
    name: str
    proc: Proc
    regs: str  # "AB" or "BA": the order of its registry addresses
    started: float
    resident: bool = False
    buf: bytes = b""
    ready_at: float | None = None
    uuid: str | None = None
    addrs: list[list[Any]] | None = None
    stop_sent: float | None = None  # SIGINT
    stop_wall: float = 0.0  # time.time() of the SIGINT (entries carry wall-clock times)
    killed_at: float | None = None  # SIGKILL
    exited_at: float | None = None  # exit seen (after SIGINT, or on its own)
    gone_at: float | None = None  # first check after death that listed it nowhere
    closed: bool = False

    @property
    def alive(self) -> bool:
        return self.killed_at is None and self.exited_at is None

    @property
    def dead_since(self) -> float | None:
        return self.killed_at if self.killed_at is not None else self.exited_at

    @property
    def stopped_cleanly(self) -> bool:
        return self.killed_at is None and self.stop_sent is not None and self.exited_at is not None


@dataclass
class Violation:
    invariant: int
    at: float
    details: str
    repeats: int = 0


@dataclass
class Soak:
    duration: float
    seed: int
    t0: float = 0.0
    joiners: dict[str, Joiner] = field(default_factory=dict)
    next_id: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    checks: Counter[int] = field(default_factory=Counter)  # ticks each invariant was checked
    broken_ticks: Counter[int] = field(default_factory=Counter)
    violations: dict[tuple[int, str], Violation] = field(default_factory=dict)
    advisories: dict[tuple[int, str], Violation] = field(default_factory=dict)  # (6), lenient
    pending_diff: dict[tuple[str, tuple[Any, ...]], float] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    ticks: int = 0
    overruns: int = 0
    rereads: int = 0
    max_alive: int = 0
    max_entries: int = 0
    elapsed: float = 0.0
    aborted: str | None = None
    memory: list[str] = field(default_factory=list)
    tick_broken: set[int] = field(default_factory=set)

    def now(self) -> float:
        return trio.current_time() - self.t0

    def violate(self, invariant: int, key: str, details: str) -> None:
        self.tick_broken.add(invariant)
        table = self.advisories if invariant == 6 and not STRICT_UNREGISTER else self.violations
        found = table.get((invariant, key))
        if found is None:
            table[(invariant, key)] = Violation(invariant, self.now(), details)
        else:
            found.repeats += 1

    def alive(self) -> list[Joiner]:
        return [j for j in self.joiners.values() if j.alive]

    def end_tick(self) -> None:
        self.broken_ticks.update(self.tick_broken)
        self.tick_broken.clear()


# -- processes ------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def read_stdout(joiner: Joiner, now: float) -> bool:
    """Take what the joiner printed so far, without blocking; ``True`` on its READY line."""
    stream = joiner.proc.popen.stdout
    assert stream is not None
    fd = stream.fileno()
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        joiner.buf += chunk
    while b"\n" in joiner.buf:
        raw, joiner.buf = joiner.buf.split(b"\n", 1)
        line = raw.decode("utf-8", "replace")
        if line.startswith("READY") and joiner.ready_at is None:
            _, uuid, *texts = line.split()
            addrs = []
            for text in texts:
                addr = tractor_reg.parse_address(text)
                assert isinstance(addr, tractor_reg.TCPAddress), text
                addrs.append([addr.host, addr.port])
            joiner.uuid, joiner.addrs, joiner.ready_at = uuid, addrs, now
            return True
    return False


def close(joiner: Joiner) -> None:
    """SIGKILL the joiner's group (if anything is left), reap it, close its pipes."""
    if not joiner.closed:
        joiner.closed = True
        joiner.proc.kill_group()


def close_all(soak: Soak) -> None:
    for joiner in soak.joiners.values():
        close(joiner)


def tail(proc: Proc, limit: int = 1500) -> str:
    return b"".join(proc._stderr_chunks).decode("utf-8", "replace")[-limit:]


def wait_registrar(proc: Proc) -> None:
    try:
        proc.wait_line("READY", timeout=15)
    except AssertionError as exc:
        raise AssertionError(
            f"registrar did not come up (exit code {proc.popen.poll()}):\n{tail(proc)}"
        ) from exc


# -- the views --------------------------------------------------------------------------------


def view_item(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What two registrars must agree on (a renewal moves only ``expires_at``)."""
    return (entry["name"], entry["uuid"], entry["revision"], repr(entry["addrs"]))


def integrity(entries: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(addresses owned twice or entries without one, uids listed twice)."""
    owners: dict[tuple[Any, ...], str] = {}
    addr_problems: list[str] = []
    uids: Counter[tuple[str, str]] = Counter()
    for e in entries:
        uid = f"{e['name']}.{e['uuid']}"
        uids[(e["name"], e["uuid"])] += 1
        if not e["addrs"]:
            addr_problems.append(f"{uid} has no address")
        for addr in e["addrs"]:
            key = tuple(addr)
            if key in owners and owners[key] != uid:
                addr_problems.append(f"{key} owned by {owners[key]} and {uid}")
            owners[key] = uid
    twice = [f"{n}.{u} x{c}" for (n, u), c in uids.items() if c > 1]
    return addr_problems, twice


# -- the soak --------------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.redis
@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
@pytest.mark.timeout(SOAK_SECONDS + 180)
async def test_soak_churn_across_two_registrars_sharing_redis() -> None:
    seed = int(os.environ.get("SOAK_SEED", str(random.randrange(2**32))))
    soak = Soak(duration=SOAK_SECONDS, seed=seed)
    rng = random.Random(seed)
    namespace = f"soak-{uuidlib.uuid4().hex[:12]}"
    regs: dict[str, Proc] = {}
    server: RedisServer | None = None
    try:
        with ExitStack() as stack:
            server = start_standalone()
            stack.callback(server.stop)
            url = (
                f"redis://127.0.0.1:{server.port}/0?namespace={namespace}"
                f"&poll_interval={POLL}&connect_timeout=0.5&socket_timeout=0.5"
            )
            addrs = {"A": Addr("127.0.0.1", free_port()), "B": Addr("127.0.0.1", free_port())}
            for label, addr in addrs.items():
                argv = registrar_argv(
                    str(addr),
                    extra=[
                        "--backend",
                        url,
                        "--lease-ttl",
                        str(REGISTRAR_TTL),
                        "--name",
                        REGISTRAR_NAME,
                    ],
                )
                regs[label] = proc = Proc(argv)
                stack.callback(proc.kill_group)
            for proc in regs.values():
                wait_registrar(proc)
            stack.callback(close_all, soak)

            async with tractor_reg.open_registry_client(
                list(addrs.values()), name="soak-driver", call_timeout=CALL_DEADLINE
            ) as client:
                with trio.fail_after(SOAK_SECONDS + 120):
                    await drive(soak, rng, client, addrs, regs, server)
            check_memory(soak)
    finally:
        print(summary(soak))
    if soak.violations or soak.aborted:
        raise AssertionError(failure_message(soak, regs))


async def drive(
    soak: Soak,
    rng: random.Random,
    client: tractor_reg.Actor,
    addrs: dict[str, Addr],
    regs: dict[str, Proc],
    server: RedisServer,
) -> None:
    soak.t0 = trio.current_time()
    for _ in range(RESIDENTS):
        start_joiner(soak, rng, addrs, resident=True)
    async with trio.open_nursery() as nursery:  # for kills in the middle of a start-up
        await ticks(soak, rng, client, addrs, regs, server, nursery)
        nursery.cancel_scope.cancel()
    soak.elapsed = soak.now()


async def ticks(
    soak: Soak,
    rng: random.Random,
    client: tractor_reg.Actor,
    addrs: dict[str, Addr],
    regs: dict[str, Proc],
    server: RedisServer,
    nursery: trio.Nursery,
) -> None:
    next_tick = soak.t0
    while soak.now() < soak.duration:
        soak.ticks += 1
        now = soak.now()
        sample_rss(soak, regs, server, now)
        for label, proc in regs.items():
            if proc.popen.poll() is not None:
                soak.aborted = f"registrar {label} exited with {proc.popen.poll()}:\n{tail(proc)}"
                return
        reap(soak)
        churn(soak, rng, addrs, nursery)
        await check(soak, client, addrs)
        await lookups(soak, rng, client, addrs)
        soak.max_alive = max(soak.max_alive, len(soak.alive()))
        soak.end_tick()
        if len(soak.violations) >= MAX_VIOLATIONS:
            soak.aborted = f"{len(soak.violations)} distinct violations: stopped early"
            return
        next_tick += 1.0
        if trio.current_time() > next_tick:
            soak.overruns += 1
            next_tick = trio.current_time()
        else:
            await trio.sleep_until(next_tick)  # pacing of the churn, not a wait for state


def start_joiner(soak: Soak, rng: random.Random, addrs: dict[str, Addr], resident: bool) -> Joiner:
    order = rng.choice(["AB", "BA"])
    name = f"{'res' if resident else 'soak'}-{soak.next_id}"
    soak.next_id += 1
    argv = joiner_argv(name, *(str(addrs[x]) for x in order), ttl=TTL, renew=RENEW)
    soak.joiners[name] = joiner = Joiner(name, Proc(argv), order, soak.now(), resident=resident)
    soak.ops["started"] += 1
    return joiner


def kill(soak: Soak, j: Joiner) -> None:
    if read_stdout(j, soak.now()):
        soak.ops["READY"] += 1
    os.killpg(j.proc.pid, signal.SIGKILL)
    j.killed_at = soak.now()
    soak.ops["SIGKILLed"] += 1
    if j.ready_at is None:
        soak.ops["SIGKILLed before READY"] += 1
    close(j)


async def kill_during_startup(soak: Soak, j: Joiner, delay: float) -> None:
    await trio.sleep(delay)  # a fault injected at a random moment, not a wait for state
    if j.alive and not j.closed:
        kill(soak, j)


def reap(soak: Soak) -> None:
    """Read READY lines, notice exits (expected or not), enforce the SIGINT deadline."""
    now = soak.now()
    soak.checks[7] += 1
    for j in soak.joiners.values():
        if j.closed:
            continue
        if read_stdout(j, now):
            soak.ops["READY"] += 1
        rc = j.proc.popen.poll()
        if rc is not None:
            j.exited_at = now
            if j.stop_sent is None:
                soak.ops["crashed"] += 1
                soak.violate(7, j.name, f"{j.name} exited on its own (rc {rc}):\n{tail(j.proc)}")
            else:
                soak.ops["stopped"] += 1
            close(j)
        elif j.stop_sent is not None and now - j.stop_sent > STOP_DEADLINE:
            soak.violate(
                7,
                j.name,
                f"{j.name} still running {now - j.stop_sent:.1f}s after SIGINT:\n{tail(j.proc)}",
            )
            j.killed_at = now
            soak.ops["killed (SIGINT ignored)"] += 1
            close(j)


def churn(soak: Soak, rng: random.Random, addrs: dict[str, Addr], nursery: trio.Nursery) -> None:
    now = soak.now()
    movable = [j for j in soak.alive() if not j.resident and j.stop_sent is None]
    for j in rng.sample(movable, min(len(movable), rng.choice([0, 0, 1, 1, 2]))):
        kill(soak, j)
    ready = [j for j in soak.alive() if j.ready_at is not None and j.stop_sent is None]
    ready = [j for j in ready if not j.resident]
    for j in rng.sample(ready, min(len(ready), rng.choice([0, 1, 1, 2]))):
        j.proc.signal(signal.SIGINT)
        j.stop_sent = now
        j.stop_wall = time.time()
        soak.ops["SIGINT sent"] += 1
    room = POOL - len(soak.alive())
    for _ in range(min(room, rng.randint(0, 3))):
        joiner = start_joiner(soak, rng, addrs, resident=False)
        if rng.random() < 0.15:  # SIGKILL it while it boots, probes, registers
            nursery.start_soon(kill_during_startup, soak, joiner, rng.uniform(0.1, 0.7))


def sample_rss(soak: Soak, regs: dict[str, Proc], server: RedisServer, now: float) -> None:
    pids = {label: proc.pid for label, proc in regs.items()}
    if server.proc is not None:
        pids["redis"] = server.proc.pid
    for label, pid in pids.items():
        kib = rss_kib(pid)
        if kib is not None:
            soak.rss.setdefault(label, []).append((now, kib))


async def read_views(
    client: tractor_reg.Actor, addrs: dict[str, Addr]
) -> dict[str, list[dict[str, Any]] | str]:
    """Both registrars' ``list_entries``, read concurrently (an error is a string)."""
    views: dict[str, list[dict[str, Any]] | str] = {}

    async def read(label: str) -> None:
        try:
            views[label] = await client.registry_call(
                addrs[label], "list_entries", deadline=CALL_DEADLINE
            )
        except Exception as exc:  # noqa: BLE001 (reported as a violation)
            views[label] = f"{type(exc).__name__}: {exc}"

    async with trio.open_nursery() as nursery:
        for label in addrs:
            nursery.start_soon(read, label)
    return views


def answered(
    views: dict[str, list[dict[str, Any]] | str],
) -> dict[str, list[dict[str, Any]]] | None:
    """``views`` if every registrar answered, ``None`` if any read failed."""
    lists = {label: view for label, view in views.items() if not isinstance(view, str)}
    return lists if len(lists) == len(views) else None


async def check(soak: Soak, client: tractor_reg.Actor, addrs: dict[str, Addr]) -> None:
    views = await read_views(client, addrs)
    # (1) a difference right after churn is expected: re-read a few times within the tick
    for _ in range(5):
        lists = answered(views)
        if lists is None:
            break
        a, b = ({view_item(e) for e in lists[x]} for x in "AB")
        if a == b:
            break
        soak.rereads += 1
        await trio.sleep(0.1)
        views = await read_views(client, addrs)
    now = soak.now()
    for label, view in views.items():
        if isinstance(view, str):
            soak.violate(2, f"read {label}", f"registrar {label} did not answer: {view}")
    entries = answered(views)
    if entries is None:
        return
    soak.max_entries = max(soak.max_entries, *(len(v) for v in entries.values()))

    # (1) agreement, per differing item, with a grace
    items = {label: {view_item(e) for e in view} for label, view in entries.items()}
    diff = {("A only", i) for i in items["A"] - items["B"]} | {
        ("B only", i) for i in items["B"] - items["A"]
    }
    soak.pending_diff = {k: soak.pending_diff.get(k, now) for k in diff}
    soak.checks[1] += 1
    for (side, item), since in soak.pending_diff.items():
        if now - since > AGREE_GRACE:
            soak.violate(
                1, f"{side} {item}", f"{item} listed by {side} only, for {now - since:.1f}s"
            )

    by_name = {label: {e["name"]: e for e in view} for label, view in entries.items()}
    for j in soak.joiners.values():
        listed = [label for label in "AB" if j.name in by_name[label]]
        if (
            j.alive
            and j.stop_sent is None
            and j.ready_at is not None
            and now - j.ready_at > READY_GRACE
        ):
            # (2) live and READY: listed by both, as it said
            for label in "AB":
                got = by_name[label].get(j.name)
                want = (j.uuid, j.addrs)
                if got is None or (got["uuid"], got["addrs"]) != want:
                    soak.violate(
                        2,
                        f"{label} {j.name}",
                        f"{j.name} (READY {now - j.ready_at:.1f}s ago, registry order {j.regs}) "
                        f"listed by {label} as {got}, want uuid/addrs {want}",
                    )
        dead_since = j.dead_since
        if dead_since is None:
            continue
        if not listed and j.gone_at is None:
            j.gone_at = now
        if listed and now - dead_since > DEAD_GRACE:  # (3)
            how = "SIGKILLed" if j.killed_at is not None else "exited"
            soak.violate(
                3,
                j.name,
                f"{j.name} {how} {now - dead_since:.1f}s ago still listed by {listed}: "
                f"{[by_name[x][j.name] for x in listed]}",
            )
        if listed and j.stopped_cleanly and now - dead_since > UNREGISTER_GRACE:  # (6)
            entry = by_name[listed[0]][j.name]
            again = entry["registered_at"] - j.stop_wall
            why = (
                f"registered again {again:.3f}s AFTER its SIGINT (revision {entry['revision']}): "
                "its lease loop re-registered it during teardown"
                if again > 0
                else "registered before its SIGINT: its unregister did not take"
            )
            soak.violate(
                6,
                j.name,
                f"{j.name} exited {now - dead_since:.1f}s ago (after SIGINT) but is still listed "
                f"by {listed}; {why}",
            )
    for label, view in entries.items():
        for e in view:
            joiner = soak.joiners.get(e["name"])
            if e["name"] == REGISTRAR_NAME:
                continue
            if joiner is None or (joiner.uuid is not None and joiner.uuid != e["uuid"]):
                soak.violate(3, f"unknown {e['name']}.{e['uuid']}", f"{label} lists unknown {e}")
        # (4) + (5)
        addr_problems, twice = integrity(view)
        for problem in addr_problems:
            soak.violate(4, f"{label} {problem}", f"{label}: {problem}")
        for problem in twice:
            soak.violate(5, f"{label} {problem}", f"{label}: uid listed twice: {problem}")
    for inv in (2, 3, 4, 5, 6):
        soak.checks[inv] += 1


async def lookups(
    soak: Soak, rng: random.Random, client: tractor_reg.Actor, addrs: dict[str, Addr]
) -> None:
    now = soak.now()
    live = [
        j
        for j in soak.alive()
        if j.ready_at is not None and now - j.ready_at > READY_GRACE and j.stop_sent is None
    ]
    dead = [j for j in soak.joiners.values() if j.dead_since is not None]
    targets: list[Joiner] = rng.sample(live, min(len(live), LOOKUPS_PER_TICK))
    long_dead = [j for j in dead if now - (j.dead_since or now) > DEAD_GRACE]
    just_killed = [j for j in dead if j.killed_at is not None and now - j.killed_at <= TTL]
    for pool in (long_dead, just_killed):
        if pool:
            targets.append(rng.choice(pool))
    for j in targets:
        order = [addrs[x] for x in rng.choice(["AB", "BA"])]
        soak.ops["lookups"] += 1
        got: Any = None
        try:
            with trio.fail_after(CALL_DEADLINE):
                async with tractor_reg.find_actor(j.name, registry_addrs=order) as portal:
                    if portal is not None:
                        assert isinstance(portal, tractor_reg.Portal)
                        got = await portal.run(whoami)
                    else:
                        got = None
        except Exception as exc:  # noqa: BLE001 (reported as a violation)
            got = f"{type(exc).__name__}: {exc}"
        if j.alive:
            soak.ops["lookups of live actors"] += 1
            if got != [j.name, j.uuid]:
                soak.violate(2, f"find {j.name}", f"find_actor({j.name!r}) gave {got!r}")
        else:
            soak.ops["lookups of dead actors"] += 1
            if got is not None:
                # a dead actor cannot answer: an error, or a portal to someone else
                soak.violate(
                    3,
                    f"find dead {j.name}",
                    f"find_actor({j.name!r}) {now - (j.dead_since or now):.1f}s after its "
                    f"death gave {got!r} (want None)",
                )


# -- memory, summary -------------------------------------------------------------------------


def window(samples: list[tuple[float, int]], lo: float, hi: float, span: float) -> list[int]:
    return [kib for t, kib in samples if lo * span <= t <= hi * span]


def check_memory(soak: Soak) -> None:
    span = soak.elapsed or soak.now()
    for label in ("A", "B"):
        samples = soak.rss.get(label, [])
        early, late = window(samples, 0.2, 0.4, span), window(samples, 0.8, 1.0, span)
        if not early or not late:
            soak.memory.append(f"{label}: too few RSS samples ({len(samples)})")
            continue
        base, end = statistics.median(early), statistics.median(late)
        growth = end - base
        limit = min(RSS_MAX_GROWTH_MIB * 1024, RSS_MAX_GROWTH_RATIO * base)
        soak.checks[8] += 1
        line = (
            f"{label}: median {base / 1024:.1f} MiB at 20-40% -> {end / 1024:.1f} MiB at "
            f"80-100% ({growth / 1024:+.1f} MiB, limit +{limit / 1024:.1f} MiB)"
        )
        soak.memory.append(line)
        if growth > limit:
            soak.violate(8, label, f"registrar {line}")
    soak.end_tick()


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _gone_stats(delays: list[float]) -> str:
    if not delays:
        return "none"
    return f"n={len(delays)} median {statistics.median(delays):.2f}s max {max(delays):.2f}s"


def summary_lines(soak: Soak) -> Iterator[str]:
    elapsed = soak.elapsed or (soak.now() if soak.t0 else 0.0)
    yield (
        f"=== soak summary: {elapsed:.0f}s of {soak.duration:.0f}s, seed {soak.seed} "
        f"(SOAK_SEED={soak.seed} replays the churn) ==="
    )
    yield "operations: " + ", ".join(f"{k} {v}" for k, v in sorted(soak.ops.items()))
    yield (
        f"ticks {soak.ticks} (overran 1s: {soak.overruns}); re-reads for agreement "
        f"{soak.rereads}; max joiners alive {soak.max_alive}; max entries listed "
        f"{soak.max_entries}"
    )
    killed = [
        j.gone_at - j.killed_at
        for j in soak.joiners.values()
        if j.killed_at is not None and j.gone_at is not None
    ]
    clean = [
        j.gone_at - j.exited_at
        for j in soak.joiners.values()
        if j.stopped_cleanly and j.gone_at is not None and j.exited_at is not None
    ]
    yield f"entry gone after SIGKILL (first check listing it nowhere): {_gone_stats(killed)}"
    yield f"entry gone after clean exit: {_gone_stats(clean)}"
    yield "invariants (ticks checked / held):"
    for inv, text in INVARIANTS.items():
        n, bad = soak.checks[inv], soak.broken_ticks[inv]
        distinct = sum(1 for v in soak.violations.values() if v.invariant == inv)
        verdict = "held" if not distinct else f"BROKEN ({distinct} distinct violations)"
        advised = sum(1 for v in soak.advisories.values() if v.invariant == inv)
        if advised:
            verdict = f"breached {advised} times (advisory: known tractor_reg bug, not failing)"
        yield f"  ({inv}) {text}: {n} / {n - bad} - {verdict}"
    for v in sorted(soak.advisories.values(), key=lambda v: v.at)[:10]:
        yield f"  advisory ({v.invariant}) at t={v.at:.1f}s: {v.details}"
    for label in ("A", "B", "redis"):
        samples = soak.rss.get(label)
        if samples:
            kibs = [k for _, k in samples]
            yield (
                f"RSS {label}: start {_mib(kibs[0])} MiB, end {_mib(kibs[-1])} MiB, "
                f"max {_mib(max(kibs))} MiB ({len(kibs)} samples)"
            )
    yield from (f"memory {line}" for line in soak.memory)
    if soak.aborted:
        yield f"ABORTED: {soak.aborted}"


def summary(soak: Soak) -> str:
    return "\n" + "\n".join(summary_lines(soak))


def failure_message(soak: Soak, regs: dict[str, Proc]) -> str:
    lines = ["soak invariants broken:"]
    if soak.aborted:
        lines.append(f"aborted: {soak.aborted}")
    for v in sorted(soak.violations.values(), key=lambda v: v.at)[:25]:
        more = f" (seen {v.repeats} more times)" if v.repeats else ""
        lines.append(
            f"- ({v.invariant}) {INVARIANTS[v.invariant]} at t={v.at:.1f}s{more}: {v.details}"
        )
    if len(soak.violations) > 25:
        lines.append(f"... and {len(soak.violations) - 25} more")
    for label, proc in regs.items():
        lines.append(f"--- registrar {label} stderr tail:\n{tail(proc, 2000)}")
    lines.append(f"(seed {soak.seed})")
    return "\n".join(lines)
