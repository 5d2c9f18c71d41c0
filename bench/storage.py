"""Storage benchmark: the registrar on ``sqlite://`` vs ``memory://``, side by side.

Run from the repository root: ``python -m bench storage [--quick] [--reps R] [--json PATH]``.
See ``bench/README.md`` for what every figure means and the targets (issue 3).

Every registrar is a separate OS process (``python -m bench._roles registrar --backend
URL``), in its own process group, awaited by its ``READY`` line and stopped at the end
whatever happened (stdin EOF, then SIGINT, then SIGKILL of the group), with the helpers
of :mod:`bench.discovery`. The measuring client runs in this process: a root actor of its
own (so that neither measured registrar holds or renews its registration) plus raw
protocol connections that handshake as any uid. Sequential figures alternate between
the backends in slices (ten per repetition), storms run back to back in an order
rotated per repetition, so that machine noise hits the backends alike; every ratio is
the median of the per-repetition ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import trio

import tractor_reg
from bench.discovery import (
    READY_DEADLINE,
    BenchError,
    Child,
    Cluster,
    CpuMeter,
    _pct,
    free_port,
    run_isolated,
    timed,
)
from tractor_reg._aio import AsyncioThread
from tractor_reg._ipc import Channel, open_stream
from tractor_reg._msg import Call, Error, Handshake, Return

#: Registrar variants: label -> (backend URL template, description). ``{db}`` is a fresh
#: database path in the scratch directory.
BACKENDS: dict[str, tuple[str, str]] = {
    "memory": ("memory://", "memory://"),
    "full": ("sqlite:///{db}", "sqlite (default: full)"),
    "normal": ("sqlite:///{db}?synchronous=normal", "sqlite synchronous=normal"),
}
TARGET_NAME = "target"
STORM_BASE_PORT = 20000
LEASE_TTL = 3600.0
HANDSHAKE_TIMEOUT = 10.0
CONNECT_PARALLEL = 64
#: Lookup and sequential-registration samples alternate between backends in this many
#: slices per repetition.
CHUNKS = 10

#: (measured row, baseline row, minimum ratio): printed as PASS/FAIL.
TARGETS: list[tuple[str, str, float]] = [
    ("lookup.full", "lookup.memory", 0.90),
    ("storm.full", "storm.memory", 0.50),
]
#: Ratios printed for information only.
INFO_RATIOS: list[tuple[str, str]] = [
    ("storm.normal", "storm.memory"),
    ("storm.normal", "storm.full"),
    ("aio.bridge_sqlite", "aio.native_sqlite"),
]

ROWS: dict[str, str] = {
    "lookup.memory": "lookup, reused portal      memory://",
    "lookup.full": "lookup, reused portal      sqlite",
    "storm.memory": "storm, concurrent regs     memory://",
    "storm.full": "storm, concurrent regs     sqlite full",
    "storm.normal": "storm, concurrent regs     sqlite normal",
    "latency.memory": "register_actor, sequential memory://",
    "latency.normal": "register_actor, sequential sqlite normal",
    "latency.full": "register_actor, sequential sqlite full",
    "aio.bridge_noop": "AsyncioThread.run(no-op coroutine)",
    "aio.bridge_sqlite": "AsyncioThread.run(aiosqlite exec+fetchone)",
    "aio.native_sqlite": "native asyncio: aiosqlite exec+fetchone",
    "aio.to_thread_sqlite3": "trio.to_thread: sqlite3 exec+fetchone",
}
ROW_ORDER = list(ROWS)

Op = Callable[[], Awaitable[object]]


# -- results ----------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    n: int
    rates: list[float] = field(default_factory=list)  # ops/s, one per repetition
    lat: list[float] = field(default_factory=list)  # seconds, pooled over repetitions
    cpu_client: list[float] = field(default_factory=list)  # CPU us per op, per repetition
    cpu_server: list[float] = field(default_factory=list)

    def add(self, rate: float, lat: list[float], cpu: tuple[int, int] | None) -> None:
        self.rates.append(rate)
        self.lat.extend(lat)
        if cpu is not None and self.n:
            self.cpu_client.append(cpu[0] / 1e3 / self.n)
            self.cpu_server.append(cpu[1] / 1e3 / self.n)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.lat)
        us_per_op = [1e6 / r for r in self.rates]
        return {
            "name": ROWS[self.key],
            "ops_per_rep": self.n,
            "reps": len(self.rates),
            "ops_per_s_median": statistics.median(self.rates) if self.rates else None,
            "ops_per_s_min": min(self.rates) if self.rates else None,
            "ops_per_s_max": max(self.rates) if self.rates else None,
            "ops_per_s_each": self.rates,
            "us_per_op_median": statistics.median(us_per_op) if us_per_op else None,
            "us_per_op_min": min(us_per_op) if us_per_op else None,
            "us_per_op_max": max(us_per_op) if us_per_op else None,
            "p50_us": _pct(lat, 0.50) * 1e6 if lat else None,
            "p99_us": _pct(lat, 0.99) * 1e6 if lat else None,
            "cpu_client_us_per_op": _median(self.cpu_client),
            "cpu_server_us_per_op": _median(self.cpu_server),
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio_of(rows: dict[str, Row], key: str, base: str) -> dict[str, Any] | None:
    a, b = rows.get(key), rows.get(base)
    if a is None or b is None or not a.rates or not b.rates:
        return None
    paired = [x / y for x, y in zip(a.rates, b.rates, strict=False)]
    return {
        "measured": key,
        "baseline": base,
        "ratio": statistics.median(paired),
        "ratio_min": min(paired),
        "ratio_max": max(paired),
        "each": paired,
    }


# -- raw protocol client ----------------------------------------------------------------


class RawPeer:
    """A connection to a registrar, handshaken as an arbitrary uid, driven frame by frame."""

    def __init__(self, chan: Channel, uid: tuple[str, str]) -> None:
        self.chan = chan
        self.uid = uid
        self._cid = 0
        # The lease token that owns this uid's registration (the first answer's).
        self.token: bytes | None = None

    async def call(self, func: str, **kwargs: Any) -> Any:
        """One ``self.func(**kwargs)`` call; its return value (an Error raises BenchError)."""
        self._cid += 1
        cid = self._cid
        await self.chan.send(Call(cid=cid, ns="self", func=func, kwargs=kwargs))
        while True:
            msg = await self.chan.recv()
            if isinstance(msg, Return) and msg.cid == cid:
                return msg.value
            if isinstance(msg, Error) and msg.cid in (cid, 0):
                raise BenchError(f"{func} as {self.uid} failed: {msg.type_name}: {msg.message}")

    async def register(self, addr: list[Any]) -> Any:
        answer = await self.call(
            "register_actor", uid=list(self.uid), addr=[addr], ttl=LEASE_TTL, token=self.token
        )
        self.token = answer["token"]
        return answer

    async def unregister(self) -> Any:
        return await self.call("unregister_actor", uid=list(self.uid), token=self.token)

    async def aclose(self) -> None:
        await self.chan.aclose()


async def open_peer(reg: tractor_reg.Address, name: str, uuid: str) -> RawPeer:
    """Connect, handshake as ``(name, uuid)`` and ping once (the registrar took us in)."""
    stream = await open_stream(reg)
    chan = Channel(stream)
    try:
        hello = Handshake(name=name, uuid=uuid, pid=os.getpid(), is_registrar=False)
        await chan.handshake(hello, HANDSHAKE_TIMEOUT)
        peer = RawPeer(chan, (name, uuid))
        await peer.call("ping")
    except BaseException:
        await chan.aclose()
        raise
    return peer


# -- registrar processes ----------------------------------------------------------------


@dataclass
class Registrar:
    variant: str
    url: str
    addr: tractor_reg.TCPAddress
    child: Child


#: TCP ports handed to registrars in this run: free_port() may return a port again
#: before the registrar it was given to has bound it.
_PORTS_GIVEN: set[int] = set()
START_ATTEMPTS = 3


def fresh_port() -> int:
    for _ in range(100):
        port = free_port()
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port
    raise BenchError("no fresh free TCP port found")


async def _spawn_registrar(cluster: Cluster, variant: str, tag: str, attempt: int) -> Registrar:
    db = cluster.tmp / f"{tag}-{variant}" / "reg.db"
    url = BACKENDS[variant][0].format(db=db)
    port = fresh_port()
    label = f"{tag}-{variant}" + (f"-retry{attempt}" if attempt else "")
    child = await cluster.start(label, "registrar", "--tcp-port", str(port), "--backend", url)
    return Registrar(variant, url, tractor_reg.TCPAddress("127.0.0.1", port), child)


async def start_registrars(cluster: Cluster, variants: list[str], tag: str) -> dict[str, Registrar]:
    """One fresh registrar process per variant (fresh database file), all READY.

    Started together; one that dies before READY (e.g. its port was taken meanwhile by
    another process) is started again on another port, up to START_ATTEMPTS times.
    """
    started = {v: await _spawn_registrar(cluster, v, tag, 0) for v in variants}
    try:
        for variant in variants:
            for attempt in range(1, START_ATTEMPTS + 1):
                reg = started[variant]
                try:
                    await reg.child.expect("READY", READY_DEADLINE, f"the {reg.url} registrar")
                    break
                except BenchError:
                    await stop_registrars(cluster, {variant: reg})
                    if attempt == START_ATTEMPTS:
                        raise
                started[variant] = await _spawn_registrar(cluster, variant, tag, attempt)
    except BaseException:
        await stop_registrars(cluster, started)
        raise
    return started


async def stop_registrars(cluster: Cluster, regs: dict[str, Registrar]) -> None:
    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as nursery:
            for reg in regs.values():
                nursery.start_soon(reg.child.stop)
        for reg in regs.values():
            with contextlib.suppress(ValueError):
                cluster.children.remove(reg.child)


def rotated(items: list[str], rep: int) -> list[str]:
    k = rep % len(items)
    return items[k:] + items[:k]


# -- 1. lookups -------------------------------------------------------------------------


def lookup_op(portal: tractor_reg.Portal | tractor_reg.LocalPortal) -> Op:
    async def op() -> object:
        found = await portal.run_from_ns("self", "find_actor", name=TARGET_NAME)
        if not found:
            raise BenchError(f"registrar lookup of {TARGET_NAME!r} found nothing")
        return found

    return op


# -- 2. the storm -----------------------------------------------------------------------


async def open_storm_peers(reg: tractor_reg.Address, count: int, tag: str) -> list[RawPeer]:
    """``count`` connections, each handshaken as its own uid ``("storm", "<tag>-<i>")``."""
    peers: list[RawPeer | None] = [None] * count
    limiter = trio.CapacityLimiter(CONNECT_PARALLEL)

    async def connect(i: int) -> None:
        async with limiter:
            peers[i] = await open_peer(reg, "storm", f"{tag}-{i}")

    try:
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(connect, i)
    except BaseException:
        await close_peers([p for p in peers if p is not None])
        raise
    return [p for p in peers if p is not None]


async def close_peers(peers: list[RawPeer]) -> None:
    with trio.CancelScope(shield=True):
        for peer in peers:
            await peer.aclose()


async def run_storm(peers: list[RawPeer], meter: CpuMeter) -> tuple[float, list[float]]:
    """Every (already handshaken) connection sends ``register_actor`` at once; the clock
    runs until the last acknowledgement: (registrations/s, time-to-ack of each)."""
    count = len(peers)
    go = trio.Event()
    all_parked = trio.Event()
    parked = 0
    acked = [0.0] * count
    pc = time.perf_counter

    async def fire(i: int, peer: RawPeer) -> None:
        nonlocal parked
        parked += 1
        if parked == count:
            all_parked.set()
        await go.wait()
        await peer.register(["127.0.0.1", STORM_BASE_PORT + i])
        acked[i] = pc()

    async with trio.open_nursery() as nursery:
        for i, peer in enumerate(peers):
            nursery.start_soon(fire, i, peer)
        await all_parked.wait()
        meter.start()
        t0 = pc()
        go.set()
    t1 = pc()
    return count / (t1 - t0), [t - t0 for t in acked]


# -- 4. the asyncio bridge --------------------------------------------------------------


async def _noop() -> None:
    return None


async def _aiosqlite_open() -> aiosqlite.Connection:
    return await aiosqlite.connect(":memory:")


async def _aiosqlite_query(conn: aiosqlite.Connection) -> Any:
    async with conn.execute("SELECT 1") as cur:
        return await cur.fetchone()


async def _native_batch(conn: aiosqlite.Connection, count: int) -> tuple[float, list[float]]:
    """``count`` aiosqlite calls timed inside the asyncio loop itself: native asyncio."""
    pc = time.perf_counter
    lat = [0.0] * count
    t0 = pc()
    for i in range(count):
        s = pc()
        await _aiosqlite_query(conn)
        lat[i] = pc() - s
    return count / (pc() - t0), lat


async def measure_aio(cfg: Config, rows: dict[str, Row], progress: Callable[[str], None]) -> None:
    """Per-call cost of the trio -> asyncio bridge; variants interleaved in slices.

    Two asyncio loops, each in its own thread (``AsyncioThread``), each with its own
    aiosqlite ``:memory:`` connection: one is called through the bridge once per
    operation; on the other a whole slice of operations runs and is timed inside the
    asyncio loop (the native figure: no trio, no bridge in the timed part).
    """
    n, w = cfg.aio_n, max(20, cfg.aio_n // 10)
    bridge = AsyncioThread("bench-asyncio-bridge")
    native_loop = AsyncioThread("bench-asyncio-native")
    plain = sqlite3.connect(":memory:", check_same_thread=False)
    conns: list[tuple[AsyncioThread, aiosqlite.Connection]] = []
    try:
        await bridge.start()
        await native_loop.start()
        conn = await bridge.run(_aiosqlite_open)
        conns.append((bridge, conn))
        native_conn = await native_loop.run(_aiosqlite_open)
        conns.append((native_loop, native_conn))

        async def bridge_noop() -> object:
            await bridge.run(_noop)
            return None

        async def bridge_sqlite() -> object:
            return await bridge.run(_aiosqlite_query, conn)

        lock = threading.Lock()

        def plain_query() -> Any:
            with lock:
                return plain.execute("SELECT 1").fetchone()

        async def to_thread_sqlite3() -> object:
            return await trio.to_thread.run_sync(plain_query)

        async def native(count: int, on_start: Callable[[], None]) -> tuple[float, list[float]]:
            on_start()
            return await native_loop.run(_native_batch, native_conn, count)

        ops = {
            "aio.bridge_noop": bridge_noop,
            "aio.bridge_sqlite": bridge_sqlite,
            "aio.to_thread_sqlite3": to_thread_sqlite3,
        }
        samplers: dict[str, Sampler] = {key: op_sampler(op) for key, op in ops.items()}
        samplers["aio.native_sqlite"] = native
        for rep in range(cfg.reps):
            progress(f"asyncio bridge, repetition {rep + 1}/{cfg.reps}")
            await warm_up(list(ops.values()), w)
            await native_loop.run(_native_batch, native_conn, w)
            results = await interleaved(samplers, {}, ["self"], n, CHUNKS, rep)
            for key, (rate, lat, _) in results.items():
                rows.setdefault(key, Row(key, n)).add(rate, lat, None)
    finally:
        with trio.CancelScope(shield=True):
            for loop, open_conn in conns:
                await loop.run(open_conn.close)
            await bridge.aclose()
            await native_loop.aclose()
            plain.close()


# -- the run ----------------------------------------------------------------------------


@dataclass
class Config:
    reps: int
    n_lookup: int
    storm: int
    n_lat: int
    aio_n: int
    quick: bool


async def measure(cfg: Config, cluster: Cluster, progress: Callable[[str], None]) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    await measure_aio(cfg, rows, progress)

    progress("starting the memory://, sqlite (full) and sqlite (normal) registrars")
    regs = await start_registrars(cluster, ["memory", "full", "normal"], "main")
    me: list[int | str] = ["self"]
    own_reg = tractor_reg.TCPAddress("127.0.0.1", fresh_port())
    peers: list[RawPeer] = []
    try:
        # Each measured registrar holds one live entry to look up, and one for the
        # sequential registrations; both connections stay open for the whole run.
        lat_peers: dict[str, RawPeer] = {}
        for i, (variant, reg) in enumerate(regs.items()):
            target = await open_peer(reg.addr, TARGET_NAME, f"bench-target-{variant}")
            peers.append(target)
            await target.register(["127.0.0.1", STORM_BASE_PORT - 100 + i])
            lat_peers[variant] = await open_peer(reg.addr, "lat", f"bench-lat-{variant}")
            peers.append(lat_peers[variant])
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(
                tractor_reg.open_root_actor(
                    # Its own registrar: it registers and renews nowhere we measure.
                    name="bench-storage",
                    registry_addrs=[own_reg],
                    enable_transports=["tcp"],
                    ensure_registry=True,
                )
            )
            portals = {
                variant: await stack.enter_async_context(
                    tractor_reg.get_registry(regs[variant].addr)
                )
                for variant in ("memory", "full")
            }
            await _measure_registrars(cfg, cluster, rows, regs, portals, lat_peers, me, progress)
    finally:
        with trio.CancelScope(shield=True):
            for peer in peers:
                await peer.aclose()
            await stop_registrars(cluster, regs)
    return rows


#: ``sampler(count, on_start)``: ``count`` timed operations -> (ops/s, latencies).
Sampler = Callable[[int, Callable[[], None]], Awaitable[tuple[float, list[float]]]]


def op_sampler(op: Op) -> Sampler:
    async def sample(count: int, on_start: Callable[[], None]) -> tuple[float, list[float]]:
        return await timed(op, count, 0, on_start)

    return sample


async def warm_up(ops: list[Op], calls: int) -> None:
    for op in ops:
        for _ in range(calls):
            await op()


async def interleaved(
    samplers: dict[str, Sampler],
    servers: dict[str, list[int]],
    client: list[int | str],
    n: int,
    chunks: int,
    rep: int,
) -> dict[str, tuple[float, list[float], tuple[int, int] | None]]:
    """``n`` timed operations of each sampler, run as ``chunks`` alternating slices.

    The samplers take turns doing ``n / chunks`` operations (order rotated per slice and
    per repetition), so a burst of machine load, or a quiet spell, hits them all alike
    instead of one sample of the pair. Per sampler: (ops/s over its own timed
    operations, latencies, summed CPU of the client and of its server over its slices).
    """
    order = rotated(list(samplers), rep)
    per_chunk = [n // chunks + (1 if i < n % chunks else 0) for i in range(chunks)]
    elapsed = dict.fromkeys(samplers, 0.0)
    lat: dict[str, list[float]] = {key: [] for key in samplers}
    cpu: dict[str, tuple[int, int] | None] = dict.fromkeys(samplers, (0, 0))
    for count in per_chunk:
        if not count:
            continue
        for key in order:
            meter = CpuMeter(client, servers.get(key, []))
            rate, chunk_lat = await samplers[key](count, meter.start)
            used, total = meter.stop(), cpu[key]
            if used is None or total is None:
                cpu[key] = None
            else:
                cpu[key] = (total[0] + used[0], total[1] + used[1])
            elapsed[key] += count / rate
            lat[key].extend(chunk_lat)
        order = order[1:] + order[:1]
    return {key: (n / elapsed[key], lat[key], cpu[key]) for key in samplers}


async def _measure_registrars(
    cfg: Config,
    cluster: Cluster,
    rows: dict[str, Row],
    regs: dict[str, Registrar],
    portals: dict[str, tractor_reg.Portal | tractor_reg.LocalPortal],
    lat_peers: dict[str, RawPeer],
    me: list[int | str],
    progress: Callable[[str], None],
) -> None:
    def record(prefix: str, n: int, results: dict[str, Any]) -> None:
        for variant, (rate, lat, cpu) in results.items():
            key = f"{prefix}.{variant}"
            rows.setdefault(key, Row(key, n)).add(rate, lat, cpu)

    servers = {variant: [reg.child.proc.pid] for variant, reg in regs.items()}
    n, w = cfg.n_lookup, max(20, cfg.n_lookup // 10)
    nl, wl = cfg.n_lat, max(5, cfg.n_lat // 10)
    addr = ["127.0.0.1", STORM_BASE_PORT - 50]

    def register_op(peer: RawPeer) -> Op:
        async def op() -> object:
            return await peer.register(addr)

        return op

    for rep in range(cfg.reps):
        progress(f"registrars, repetition {rep + 1}/{cfg.reps}")
        lookups = {variant: lookup_op(portals[variant]) for variant in ("memory", "full")}
        await warm_up(list(lookups.values()), w)
        samplers = {key: op_sampler(op) for key, op in lookups.items()}
        record("lookup", n, await interleaved(samplers, servers, me, n, CHUNKS, rep))
        registers = {v: register_op(lat_peers[v]) for v in ("memory", "normal", "full")}
        await warm_up(list(registers.values()), wl)
        samplers = {key: op_sampler(op) for key, op in registers.items()}
        record("latency", nl, await interleaved(samplers, servers, me, nl, CHUNKS, rep))

        # Fresh registrars (fresh files); every connection of every storm is open and
        # handshaken before the first storm, so the storms run back to back.
        variants = rotated(["memory", "full", "normal"], rep)
        storm_regs = await start_registrars(cluster, variants, f"storm{rep}")
        storm_peers: dict[str, list[RawPeer]] = {}
        try:
            for variant in variants:
                storm_peers[variant] = await open_storm_peers(
                    storm_regs[variant].addr, cfg.storm, f"r{rep}"
                )
            for variant in variants:
                meter = CpuMeter(me, [storm_regs[variant].child.proc.pid])
                rate, acks = await run_storm(storm_peers[variant], meter)
                key = f"storm.{variant}"
                rows.setdefault(key, Row(key, cfg.storm)).add(rate, acks, meter.stop())
        finally:
            for peers in storm_peers.values():
                await close_peers(peers)
            await stop_registrars(cluster, storm_regs)


# -- report -----------------------------------------------------------------------------


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def report(
    rows: dict[str, Row], cfg: Config, load: dict[str, Any], out: Callable[[str], None]
) -> dict[str, Any]:
    header = (
        f"{'benchmark':<44} {'ops/rep':>7} {'ops/s':>8} {'min-max':>15} "
        f"{'p50 us':>7} {'p99 us':>7} {'cpu us/op: client':>17} {'server':>6}"
    )
    out("")
    out(header)
    out("-" * len(header))
    summaries: dict[str, Any] = {}
    for key in ROW_ORDER:
        r = rows.get(key)
        if r is None or key.startswith("aio."):
            continue
        s = r.summary()
        summaries[key] = s
        span = f"{_fmt_rate(s['ops_per_s_min'])}-{_fmt_rate(s['ops_per_s_max'])}"
        out(
            f"{s['name']:<44} {r.n:>7} {_fmt_rate(s['ops_per_s_median']):>8} {span:>15} "
            f"{_fmt_us(s['p50_us']):>7} {_fmt_us(s['p99_us']):>7} "
            f"{_fmt_us(s['cpu_client_us_per_op']):>17} {_fmt_us(s['cpu_server_us_per_op']):>6}"
        )
    out("(storm rows: p50/p99 are the times from the start until that share of acks arrived)")
    out("")
    header = f"{'asyncio bridge, per call':<44} {'calls':>7} {'us/call':>8} {'min-max':>15}"
    out(header)
    out("-" * len(header))
    for key in ROW_ORDER:
        r = rows.get(key)
        if r is None or not key.startswith("aio."):
            continue
        s = r.summary()
        summaries[key] = s
        span = f"{s['us_per_op_min']:.1f}-{s['us_per_op_max']:.1f}"
        out(f"{s['name']:<44} {r.n:>7} {s['us_per_op_median']:>8.1f} {span:>15}")
    bridge, native = rows.get("aio.bridge_sqlite"), rows.get("aio.native_sqlite")
    overhead: dict[str, Any] | None = None
    if bridge is not None and native is not None:
        each = [1e6 / b - 1e6 / a for b, a in zip(bridge.rates, native.rates, strict=False)]
        overhead = {"median": statistics.median(each), "min": min(each), "max": max(each)}
        out(
            f"{'bridge overhead on aiosqlite (bridge - native)':<44} {'':>7} "
            f"{overhead['median']:>8.1f} {overhead['min']:.1f}-{overhead['max']:.1f}".rstrip()
        )

    out("")
    out("Ratios (median of per-repetition ratios, min-max in brackets):")
    checks: list[dict[str, Any]] = []
    for key, base, minimum in TARGETS:
        rr = ratio_of(rows, key, base)
        if rr is None:
            continue
        rr["target"] = minimum
        rr["pass"] = rr["ratio"] >= minimum
        checks.append(rr)
        verdict = "PASS" if rr["pass"] else "FAIL"
        out(
            f"  {key + ' / ' + base:<34} {rr['ratio']:6.3f} "
            f"[{rr['ratio_min']:.3f}-{rr['ratio_max']:.3f}]  target >= {minimum:.2f}  {verdict}"
        )
    for key, base in INFO_RATIOS:
        rr = ratio_of(rows, key, base)
        if rr is None:
            continue
        checks.append(rr)
        out(
            f"  {key + ' / ' + base:<34} {rr['ratio']:6.3f} "
            f"[{rr['ratio_min']:.3f}-{rr['ratio_max']:.3f}]  (information)"
        )
    failed = [c for c in checks if c.get("pass") is False]
    out("")
    missed = ", ".join(f"{c['measured']}/{c['baseline']}" for c in failed)
    out("targets: all PASS" if not failed else f"targets: FAIL {missed}")
    return {
        "benchmark": "storage",
        "config": cfg.__dict__,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "trio": trio.__version__,
            "aiosqlite": aiosqlite.__version__,
            "sqlite": sqlite3.sqlite_version,
            "tractor_reg": tractor_reg.__version__,
        },
        "load": load,
        "rows": summaries,
        "bridge_overhead_us": overhead,
        "ratios": checks,
        "all_targets_pass": not failed,
    }


# -- entry point ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short run (well under 60 s)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (median reported)")
    parser.add_argument("--n", type=int, default=None, help="lookups per repetition and backend")
    parser.add_argument(
        "--storm", type=int, default=1000, help="concurrent registrations per storm (1000)"
    )
    parser.add_argument(
        "--lat-n", type=int, default=None, help="sequential registrations per repetition"
    )
    parser.add_argument("--aio-n", type=int, default=None, help="bridge calls per repetition")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write results as JSON")


def make_config(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    reps = args.reps if args.reps is not None else (3 if quick else 7)
    n = args.n if args.n is not None else (1000 if quick else 5000)
    n_lat = args.lat_n if args.lat_n is not None else (200 if quick else 1000)
    aio_n = args.aio_n if args.aio_n is not None else (1000 if quick else 3000)
    return Config(
        reps=max(1, reps),
        n_lookup=max(20, n),
        storm=max(1, args.storm),
        n_lat=max(20, n_lat),
        aio_n=max(20, aio_n),
        quick=quick,
    )


def raise_fd_limit(need: int) -> tuple[int, int]:
    """Raise the soft fd limit towards the hard one (inherited by the registrars too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = hard if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < need:
        raise BenchError(f"fd limit {soft} (hard {hard}) is below the {need} a storm needs")
    return soft, hard


def machine_load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen}


def run_storage(args: argparse.Namespace) -> tuple[int, dict[str, Any] | None]:
    """Run the storage benchmark; (exit status, results). Status 0 whatever the ratios."""
    cfg = make_config(args)

    def progress(msg: str) -> None:
        print(f"[bench storage] {msg}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    load_before = machine_load()
    print(
        f"tractor_reg storage benchmark: {cfg.reps} repetitions; lookups {cfg.n_lookup}, "
        f"storm {cfg.storm} connections, sequential registrations {cfg.n_lat}, bridge calls "
        f"{cfg.aio_n}; python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cpus, load average {load_before['loadavg_1m']:.2f} "
        f"{load_before['loadavg_5m']:.2f} {load_before['loadavg_15m']:.2f}",
        flush=True,
    )

    async def run(tmp: Path) -> dict[str, Row]:
        # Every storm connection is one fd here (three storms' worth are open at once)
        # and one in its registrar; a margin for sockets, database files and pipes.
        raise_fd_limit(3 * cfg.storm + 256)
        cluster = Cluster(tmp)
        try:
            return await measure(cfg, cluster, progress)
        finally:
            progress("stopping processes")
            await cluster.stop_all()

    code, rows = run_isolated(run, "storage benchmark")
    if rows is None:
        return code, None
    load = {"before": load_before, "after": machine_load()}
    result = report(rows, cfg, load, print)
    result["elapsed_s"] = time.perf_counter() - started
    after = load["after"]
    print(
        f"(run took {result['elapsed_s']:.1f} s; load average at the end "
        f"{after['loadavg_1m']:.2f} {after['loadavg_5m']:.2f} {after['loadavg_15m']:.2f})"
    )
    return 0, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench storage",
        description="tractor_reg storage benchmark: the registrar on sqlite:// vs memory://.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    status, result = run_storage(args)
    if result is not None and args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
