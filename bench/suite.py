"""The whole benchmark suite: ``python -m bench [--quick] [--json PATH] [--png PATH]``.

Every scenario for ``memory://``, ``sqlite://`` and ``redis://`` (a ``redis-server``
this run starts on a free port and kills at the end), the peers (Pyro5's name server in
memory and with SQLite storage) and the raw limits (bare trio echo, ``sqlite3`` upsert,
redis-py ``GET``), measured side by side in one run; one table, a JSON file and a PNG
chart. See ``docs/performance.md`` for what each row measures and the targets.

Phases, in order (each process in its own process group, stopped at the end whatever
happened, Ctrl-C included):

1. **populate**: the ``sqlite://`` and ``redis://`` stores of the scale and cold-start
   scenarios are filled through the backend API (``bench._roles populate``), before any
   registrar opens them; the two fill in parallel.
2. **main**: one registrar per backend (TCP + UDS) holding a ``target`` actor, a second
   registrar on the same SQLite file / Redis namespace, the echo server, the Pyro5 name
   servers and 16 client processes. Per repetition, interleaved: echo, lookups,
   ``find_actor``, connect, 16-way rows (TCP then UDS), Pyro5 rows, registrations,
   raw limits and ``wait_for_actor`` wake-ups; the backend order rotates per repetition.
3. **storms**: 1,000 (all backends, alternating) and 10,000 (one backend at a time)
   concurrent registrations over pre-opened connections, each followed by the
   unregistration storm that empties the registry again for the next repetition.
4. **scale**: registrars holding 10, 1,000, 10,000 and 100,000 entries per backend,
   lookups interleaved in slices across all of them; then each one's RSS.
5. **cold start**: a registrar started on the 100,000-entry store and on an empty one,
   timed from spawning it to the answer of its first lookup; its RSS then.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

import tractor_reg
from bench import peers
from bench._roles import FrameStream, raise_nofile, scale_uid
from bench.discovery import (
    READY_DEADLINE,
    TARGET_NAME,
    BenchError,
    Child,
    Cluster,
    CpuMeter,
    _pct,
    connect_op,
    echo_op,
    find_op,
    lookup_op,
    open_raw,
    run_clients_round,
    run_isolated,
    timed_concurrent,
    two_server_floor_op,
)
from bench.storage import (
    STORM_BASE_PORT,
    RawPeer,
    close_peers,
    fresh_port,
    interleaved,
    machine_load,
    op_sampler,
    open_peer,
    open_storm_peers,
    rotated,
    warm_up,
)
from tractor_reg._ipc import Channel, open_stream
from tractor_reg._msg import Handshake

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
DEFAULT_PNG = ROOT / "bench" / "results" / "latest.png"

BACKENDS = ("memory", "sqlite", "redis")
TRANSPORTS = ("tcp", "uds")
CONC = 16
SCALE_SIZES = (10, 1_000, 10_000, 100_000)
BIG = 100_000
STORM_SIZES = (1_000, 10_000)
#: Scale lookups alternate between the registrars in this many slices per repetition.
CHUNKS = 10
#: Deadline for a registrar that loads or fills a large registry before READY.
BIG_READY_DEADLINE = 180.0
POPULATE_DEADLINE = 600.0
#: Ports of the addresses the wake-up, sequential and 16-client registrations use.
WAKE_BASE_PORT = 31000
REG16_BASE_PORT = 19900
LAT_PORT = 19950
SQLITE_SYNC = "FULL"  # the sqlite:// backend's default synchronous level

PYRO_STORES = ("memory", "sqlite")


# -- configuration -----------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    reps: int
    n: int  # sequential lookups / echo round trips per row and repetition
    n_find: int  # find_actor and connect per repetition
    per_task: int  # operations per task/thread/process in 16-way rows
    warmup: int
    n_reg: int  # sequential registrations per repetition
    per_task_reg: int  # registrations per client in 16-client rows
    n_pyro: int  # Pyro5 sequential lookups per repetition
    n_pyro_reg: int  # Pyro5 sequential registrations per repetition
    storm_reps: dict[int, int]
    wake_n: int  # wake-ups per configuration and repetition
    scale_n: int  # lookups per scale registrar and repetition
    cold_reps: int
    procs: bool
    peers: bool
    backends: list[str]


def make_config(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    reps = args.reps if args.reps is not None else (3 if quick else 5)
    reps = max(1, reps)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            raise SystemExit(f"unknown backend {b!r}; expected some of {','.join(BACKENDS)}")
    if "memory" not in backends:
        backends.insert(0, "memory")  # every backend target is a ratio to memory://
    if quick:
        return Config(
            quick=True,
            reps=reps,
            n=500,
            n_find=150,
            per_task=40,
            warmup=50,
            n_reg=100,
            per_task_reg=10,
            n_pyro=500,
            n_pyro_reg=100,
            storm_reps={1_000: reps, 10_000: 0},  # 10,000: full runs only
            wake_n=6,
            scale_n=400,
            cold_reps=reps,
            procs=bool(args.procs) and not args.no_procs,
            peers=not args.no_peers,
            backends=backends,
        )
    return Config(
        quick=False,
        reps=reps,
        n=2500,
        n_find=600,
        per_task=200,
        warmup=250,
        n_reg=400,
        per_task_reg=40,
        n_pyro=2500,
        n_pyro_reg=400,
        storm_reps={1_000: reps, 10_000: 3},
        wake_n=20,
        scale_n=2000,
        cold_reps=reps,
        procs=not args.no_procs,
        peers=not args.no_peers,
        backends=backends,
    )


# -- results -----------------------------------------------------------------------------


@dataclass
class Metric:
    """One row of the table: a value per repetition (median, min-max over them)."""

    key: str
    section: str
    label: str
    backend: str
    transport: str
    unit: str  # ops/s, ms, s, MB
    n: int = 0  # operations per repetition (0: not a rate)
    values: list[float] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)  # seconds, pooled over repetitions
    cpu_client: list[float] = field(default_factory=list)  # CPU us per op, per repetition
    cpu_server: list[float] = field(default_factory=list)

    def add(
        self,
        value: float,
        lat: list[float] | None = None,
        cpu: tuple[int, int] | None = None,
        ops: int = 0,
    ) -> None:
        self.values.append(value)
        if lat:
            self.lat.extend(lat)
        if cpu is not None and ops:
            self.cpu_client.append(cpu[0] / 1e3 / ops)
            self.cpu_server.append(cpu[1] / 1e3 / ops)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.lat)
        return {
            "section": self.section,
            "label": self.label,
            "backend": self.backend,
            "transport": self.transport,
            "unit": self.unit,
            "ops_per_rep": self.n,
            "reps": len(self.values),
            "median": self.median,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "each": self.values,
            "p50_us": _pct(lat, 0.50) * 1e6 if lat else None,
            "p99_us": _pct(lat, 0.99) * 1e6 if lat else None,
            "cpu_client_us_per_op": statistics.median(self.cpu_client) if self.cpu_client else None,
            "cpu_server_us_per_op": statistics.median(self.cpu_server) if self.cpu_server else None,
        }


SECTIONS = [
    ("lookup", "lookups and find_actor, against the bare trio msgspec echo"),
    ("reg", "registrations"),
    ("storm", "registration storms (concurrent, one connection per registering uid)"),
    ("wake", "wait_for_actor wake-up latency (registration sent -> waiter answered)"),
    ("scale", "lookups by registry size (one client, TCP, reused portal)"),
    ("cold", "cold start (spawn -> first lookup answered) and registrar RSS"),
    ("peer", "peers and raw limits"),
]


class Results:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def metric(
        self,
        key: str,
        section: str,
        label: str,
        backend: str = "-",
        transport: str = "-",
        unit: str = "ops/s",
        n: int = 0,
    ) -> Metric:
        found = self.metrics.get(key)
        if found is None:
            found = Metric(key, section, label, backend, transport, unit, n)
            self.metrics[key] = found
        return found

    def get(self, key: str) -> Metric | None:
        m = self.metrics.get(key)
        return m if m is not None and m.values else None


@dataclass
class Target:
    issue: str
    name: str
    num: str
    den: str | None
    op: str  # ">=" or "<="
    threshold: float | None  # None: information only


def evaluate(t: Target, res: Results) -> dict[str, Any] | None:
    """The ratio (or value) a target checks: the median of per-repetition ratios when
    both sides were measured in the same repetitions, else the ratio of the medians."""
    a = res.get(t.num)
    if a is None:
        return None
    each: list[float]
    if t.den is None:
        each = list(a.values)
        value = statistics.median(each)
    else:
        b = res.get(t.den)
        if b is None:
            return None
        if len(a.values) == len(b.values):
            each = [x / y for x, y in zip(a.values, b.values, strict=True) if y]
            value = statistics.median(each) if each else float("nan")
        else:
            each = []
            value = statistics.median(a.values) / statistics.median(b.values)
    out: dict[str, Any] = {
        "issue": t.issue,
        "name": t.name,
        "measured": t.num,
        "baseline": t.den,
        "value": value,
        "min": min(each) if each else value,
        "max": max(each) if each else value,
        "each": each,
        "op": t.op,
        "target": t.threshold,
    }
    if t.threshold is not None:
        out["pass"] = value >= t.threshold if t.op == ">=" else value <= t.threshold
    return out


def targets_for(cfg: Config) -> list[Target]:
    """Every target of issues 6, 4, 3 and 2 that this run's backends allow."""
    big, ge, le = BIG, ">=", "<="
    ts = [
        Target(
            "6",
            f"{b}: lookups at 100,000 entries / at 10",
            f"scale.{big}.{b}",
            f"scale.10.{b}",
            ge,
            0.90,
        )
        for b in cfg.backends
    ]
    ts += [
        Target("6", "sqlite: cold start, 100,000 entries (s)", f"cold.{big}.sqlite", None, le, 2.0),
        Target(
            "6",
            "sqlite: cold start 100,000 / empty store",
            f"cold.{big}.sqlite",
            "cold.empty.sqlite",
            le,
            5.0,
        ),
    ]
    ts += [
        Target("6", f"{b}: registrar RSS, 100,000 entries (MB)", f"rss.{big}.{b}", None, le, 150.0)
        for b in cfg.backends
    ]
    for b, thr in (("memory", 2.5), ("sqlite", 5.0)):
        ts += [
            Target(
                "6",
                f"lookups {b}:// / Pyro5 {b} NS, 1 client",
                f"lookup.{b}.tcp",
                f"pyro.lookup.{b}",
                ge,
                thr,
            ),
            Target(
                "6",
                f"lookups {b}:// / Pyro5 {b} NS, 16 clients",
                f"lookup16t.{b}.tcp",
                f"pyro.lookup16.{b}",
                ge,
                thr,
            ),
        ]
    ts += [
        Target(
            "6",
            "registrations sqlite:// / Pyro5 sqlite NS, 1 client",
            "reg.sqlite",
            "pyro.register.sqlite",
            ge,
            5.0,
        ),
        Target(
            "6",
            "registrations sqlite:// / Pyro5 sqlite NS, 16 clients",
            "reg16.sqlite",
            "pyro.register16.sqlite",
            ge,
            5.0,
        ),
    ]
    ts += [
        Target(
            "4",
            f"lookups redis:// / memory:// ({tr})",
            f"lookup.redis.{tr}",
            f"lookup.memory.{tr}",
            ge,
            0.90,
        )
        for tr in TRANSPORTS
    ]
    ts += [
        Target(
            "4",
            "storm of 1,000: redis:// / memory://",
            "storm.1000.redis",
            "storm.1000.memory",
            ge,
            0.50,
        ),
        Target(
            "3",
            "lookups sqlite:// / memory:// (tcp)",
            "lookup.sqlite.tcp",
            "lookup.memory.tcp",
            ge,
            0.90,
        ),
        Target(
            "3",
            "storm of 1,000: sqlite:// / memory://",
            "storm.1000.sqlite",
            "storm.1000.memory",
            ge,
            0.50,
        ),
    ]
    for tr in TRANSPORTS:  # issue 2: the registrar's backend there was memory://
        ts += [
            Target(
                "2", f"memory lookup / echo ({tr})", f"lookup.memory.{tr}", f"echo.{tr}", ge, 0.70
            ),
            Target(
                "2", f"memory find_actor / echo ({tr})", f"find.memory.{tr}", f"echo.{tr}", ge, 0.25
            ),
        ]
    return [t for t in ts if _uses_known_backends(t, cfg)]


def _uses_known_backends(t: Target, cfg: Config) -> bool:
    for key in [t.num] + ([t.den] if t.den else []):
        if key.startswith("pyro."):
            continue
        if any(f".{b}" in key and b not in cfg.backends for b in BACKENDS):
            return False
    return True


def info_for(cfg: Config) -> list[Target]:
    """Ratios printed for information: other backends, ceilings, wake-ups, big storms."""
    ts: list[Target] = []

    def info(name: str, num: str, den: str | None) -> None:
        ts.append(Target("-", name, num, den, "", None))

    for tr in TRANSPORTS:
        info(f"floor / echo ({tr})", f"floor.{tr}", None)
        info(f"two-server floor / echo ({tr})", f"floor2.{tr}", f"echo.{tr}")
        for b in cfg.backends:
            if b != "memory":
                info(f"{b} lookup / echo ({tr})", f"lookup.{b}.{tr}", f"echo.{tr}")
                info(f"{b} find_actor / echo ({tr})", f"find.{b}.{tr}", f"echo.{tr}")
            info(f"{b} 16 tasks / echo ({tr})", f"lookup16t.{b}.{tr}", f"echo.{tr}")
    for store in PYRO_STORES:
        info(f"ceiling: echo / Pyro5 {store} lookup", "echo.tcp", f"pyro.lookup.{store}")
        info(f"ceiling: echo16 / Pyro5 {store} lookup, 16", "echo16.tcp", f"pyro.lookup16.{store}")
    info(
        "ceiling: raw sqlite3 upsert / Pyro5 sqlite register", "raw.sqlite3", "pyro.register.sqlite"
    )
    info("memory registrations / Pyro5 memory, 1 client", "reg.memory", "pyro.register.memory")
    info("memory registrations / Pyro5 memory, 16", "reg16.memory", "pyro.register16.memory")
    info("sqlite:// registrations / raw sqlite3 upsert", "reg.sqlite", "raw.sqlite3")
    for b in cfg.backends:
        if b != "memory":
            info(f"{b} cold start 100,000 / empty", f"cold.{BIG}.{b}", f"cold.empty.{b}")
            info(f"storm of 10,000: {b} / memory", f"storm.10000.{b}", "storm.10000.memory")
            info(f"{b}: wake-up across registrars / same", f"wake.cross.{b}", f"wake.same.{b}")
    if "redis" in cfg.backends:
        info("redis lookup / redis-py GET", "lookup.redis.tcp", "raw.redis_get")
    return [t for t in ts if _uses_known_backends(t, cfg)]


# -- processes ---------------------------------------------------------------------------


@dataclass
class Reg:
    """A registrar process of this run."""

    label: str
    url: str
    tcp: tractor_reg.TCPAddress
    uds: tractor_reg.UDSAddress | None
    child: Child

    def addr(self, transport: str) -> tractor_reg.Address:
        if transport == "uds":
            assert self.uds is not None
            return self.uds
        return self.tcp


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB (VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


#: Slices per repetition for the 16-way rows (each slice restarts 16 tasks or threads).
CONC16_CHUNKS = 4
#: ``sampler(count, on_start)``: ``count`` timed operations -> (ops/s, latencies).
Sampler = Callable[[int, Callable[[], None]], Awaitable[tuple[float, list[float]]]]


@dataclass
class Sample:
    """A row of an interleaved group: its metric, how to sample it, its server pids."""

    metric: Metric
    sampler: Sampler
    server: list[int]


@dataclass
class Main:
    """What the main phase's repetitions use."""

    regs: dict[str, Reg]
    seconds: dict[str, Reg]
    portals: dict[tuple[str, str], Any]
    echo: Child
    echo_port: int
    echo_uds: str
    echo2: Child
    echo2_port: int
    echo2_uds: str
    echo1: dict[str, FrameStream]
    echo16: dict[str, list[FrameStream]]
    targets: dict[str, Child]
    clients: list[Child]
    pyro: dict[str, int]
    lat_peers: dict[str, RawPeer]
    reg16_peers: dict[str, list[RawPeer]]
    raw_sqlite: peers.SqliteUpserts
    raw_redis: peers.RedisGets | None


def conc_sampler(ops: list[Callable[[], Awaitable[object]]]) -> Sampler:
    """All ``ops`` at once, each in its own task: ``count / len(ops)`` calls each."""

    async def sample(count: int, on_start: Callable[[], None]) -> tuple[float, list[float]]:
        return await timed_concurrent(ops, max(1, count // len(ops)), 0, on_start)

    return sample


def thread_sampler(
    fn: Callable[..., tuple[float, list[float]]], *args: Any, per_thread: bool = False
) -> Sampler:
    """A blocking client run in a worker thread: ``fn(*args, count, warmup)`` (``count``
    per thread of ``peers.THREADS`` when ``per_thread``). A few untimed calls first."""

    async def sample(count: int, on_start: Callable[[], None]) -> tuple[float, list[float]]:
        calls = max(1, count // peers.THREADS) if per_thread else count
        on_start()
        return await trio.to_thread.run_sync(functools.partial(fn, *args, calls, 3))

    return sample


def register_op(peer: RawPeer, port: int) -> Callable[[], Awaitable[object]]:
    """Re-register the peer's own uid at one address (each call is one committed write)."""
    addr: list[Any] = ["127.0.0.1", port]

    async def op() -> object:
        return await peer.register(addr)

    return op


class Suite:
    def __init__(self, cfg: Config, cluster: Cluster, progress: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.tmp = cluster.tmp
        self.progress = progress
        self.res = Results()
        self.notes: list[str] = []
        self.phases: dict[str, float] = {}
        self.redis_port: int | None = None
        self.redis_child: Child | None = None
        self.redis_version: str | None = None
        self.pyro_version = peers.version_of("Pyro5") if cfg.peers else None
        self.stores: dict[str, dict[str, str]] = {}  # backend -> size label -> URL
        self.pyro_children: dict[str, Child] = {}
        self.populating: list[tuple[str, Child]] = []
        (self.tmp / "stores").mkdir(exist_ok=True)

    # -- process helpers ------------------------------------------------------------------

    async def stop(self, children: list[Child], grace: float = 3.0) -> None:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for child in children:
                    nursery.start_soon(functools.partial(child.stop, grace))
            for child in children:
                with contextlib.suppress(ValueError):
                    self.cluster.children.remove(child)

    async def stop_everything(self) -> None:
        """Clients, targets and peers first, then registrars, then redis-server."""
        with trio.CancelScope(shield=True):
            rest = [c for c in self.cluster.children if c is not self.redis_child]
            first = [c for c in rest if not c.label.startswith("reg")]
            await self.stop(first)
            await self.stop([c for c in rest if c.label.startswith("reg")])
            if self.redis_child is not None:
                await self.stop([self.redis_child], grace=0.5)

    async def start_registrar(
        self,
        label: str,
        url: str,
        uds: bool = False,
        prepopulate: int = 0,
        deadline: float = READY_DEADLINE,
    ) -> Reg:
        """Start a registrar and wait for READY; one that died before (its free port was
        taken meanwhile) is started again on another port."""
        reg = await self.spawn_registrar(label, url, uds, prepopulate)
        return await self.await_registrar(reg, deadline)

    async def spawn_registrar(self, label: str, url: str, uds: bool, prepopulate: int) -> Reg:
        port = fresh_port()
        args = ["--tcp-port", str(port), "--backend", url]
        uds_addr: tractor_reg.UDSAddress | None = None
        if uds:
            uds_addr = tractor_reg.UDSAddress(str(self.tmp), f"{label}.sock")
            args += ["--uds", uds_addr.path]
        if prepopulate:
            args += ["--prepopulate", str(prepopulate)]
        child = await self.cluster.start(label, "registrar", *args)
        return Reg(label, url, tractor_reg.TCPAddress("127.0.0.1", port), uds_addr, child)

    async def await_registrar(self, reg: Reg, deadline: float = READY_DEADLINE) -> Reg:
        for attempt in range(3):
            try:
                await reg.child.expect("READY", deadline, f"the {reg.label} registrar ({reg.url})")
                return reg
            except BenchError:
                await self.stop([reg.child])
                if attempt == 2 or reg.child.proc.returncode is None:
                    raise
            prepop = 0
            reg = await self.spawn_registrar(
                f"{reg.label}-retry{attempt + 1}", reg.url, reg.uds is not None, prepop
            )
        raise BenchError(f"registrar {reg.label} did not start")

    # -- redis-server -------------------------------------------------------------------------

    async def start_redis(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            self.notes.append("redis-server not found: the redis:// rows are skipped")
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = await trio.run_process([exe, "--version"], capture_stdout=True)
            text = done.stdout.decode(errors="replace")
            words = [w for w in text.split() if w.startswith("v=")]
            self.redis_version = words[0][2:] if words else text.strip()
        directory = self.tmp / "redis"
        directory.mkdir(exist_ok=True)
        for attempt in range(3):
            port = fresh_port()
            child = await self.cluster.start_argv(
                f"redis-server-{attempt}",
                [
                    exe,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(directory),
                    "--logfile",
                    str(directory / f"redis-{port}.log"),
                ],
            )
            if await self._redis_answers(port, child):
                self.redis_port, self.redis_child = port, child
                return
            await self.stop([child], grace=0.5)
        raise BenchError("redis-server did not answer PING (3 attempts)")

    async def _redis_answers(self, port: int, child: Child) -> bool:
        with trio.move_on_after(10.0):
            while child.proc.poll() is None:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    await trio.sleep(0.02)  # a server starting up: poll its port
                    continue
                async with stream:
                    await stream.send_all(b"*1\r\n$4\r\nPING\r\n")
                    reply = await stream.receive_some(64)
                if b"PONG" in reply:
                    return True
                await trio.sleep(0.02)
        return False

    def redis_url(self, namespace: str) -> str:
        assert self.redis_port is not None
        return f"redis://127.0.0.1:{self.redis_port}/0?namespace={namespace}"

    def sqlite_url(self, name: str) -> str:
        path = self.tmp / "stores" / f"{name}.db"
        return f"sqlite:///{path}"

    def url(self, backend: str, name: str) -> str:
        if backend == "memory":
            return "memory://"
        if backend == "sqlite":
            return self.sqlite_url(name)
        return self.redis_url(f"bench-{name}")

    # -- phase 1: populate ----------------------------------------------------------------

    async def populate(self) -> None:
        """Start filling the durable stores (they fill while the main phase starts up)."""
        for backend in [b for b in self.cfg.backends if b != "memory"]:
            stores = {str(size): self.url(backend, f"scale-{size}") for size in SCALE_SIZES}
            stores["empty"] = self.url(backend, "cold-empty")
            self.stores[backend] = stores
            specs: list[str] = []
            for label, url in stores.items():
                count = 0 if label == "empty" else int(label)
                specs += ["--store", f"{url}={count}"]
            child = await self.cluster.start(f"populate-{backend}", "populate", *specs)
            self.populating.append((backend, child))

    async def populated(self) -> None:
        """Wait until every store is filled."""
        try:
            for backend, child in self.populating:
                what = f"filling the {backend} stores"
                words = await child.expect("READY", POPULATE_DEADLINE, what)
                self.progress(f"{backend} stores filled in {float(words[0]):.1f} s")
                self.res.metric(
                    f"populate.{backend}",
                    "cold",
                    f"fill the stores, {sum(SCALE_SIZES):,} entries (setup)",
                    backend,
                    unit="s",
                ).add(float(words[0]))
        finally:
            await self.stop([c for _, c in self.populating])
            self.populating.clear()

    async def main_phase(self) -> None:
        cfg, res = self.cfg, self.res
        echo_uds = str(self.tmp / "echo.sock")
        echo = await self.cluster.start("echo", "echo", "--uds", echo_uds)
        # A second echo server: the two-server floor dials it as find_actor dials a target.
        echo2_uds = str(self.tmp / "echo2.sock")
        echo2 = await self.cluster.start("echo2", "echo", "--uds", echo2_uds)
        regs: dict[str, Reg] = {}
        seconds: dict[str, Reg] = {}
        for backend in cfg.backends:
            url = self.url(backend, "main")
            regs[backend] = await self.spawn_registrar(f"reg-{backend}", url, True, 0)
        echo_port = int((await echo.expect("READY", READY_DEADLINE, "the echo server"))[0])
        echo2_port = int((await echo2.expect("READY", READY_DEADLINE, "the 2nd echo server"))[0])
        for backend in cfg.backends:
            regs[backend] = await self.await_registrar(regs[backend])
        for backend in cfg.backends:
            if backend != "memory":  # a second registrar sharing the store
                seconds[backend] = await self.start_registrar(f"reg2-{backend}", regs[backend].url)
        targets: dict[str, Child] = {}
        for backend in cfg.backends:
            reg = regs[backend]
            assert reg.uds is not None
            targets[backend] = await self.cluster.start(
                f"target-{backend}",
                "target",
                "--tcp-port",
                str(reg.tcp.port),
                "--uds",
                reg.uds.path,
            )
        for backend, child in targets.items():
            await child.expect("READY", READY_DEADLINE, f"the target actor of {backend}")
        pyro: dict[str, int] = {}
        if cfg.peers:
            if self.pyro_version is None:
                self.notes.append(
                    "Pyro5 is not installed (pip install -e '.[bench]'): no Pyro5 rows"
                )
            else:
                pyro = await self.start_pyro()
        clients: list[Child] = []
        if cfg.procs:
            self.progress(f"starting {CONC} client processes")
            for i in range(CONC):
                clients.append(
                    await self.cluster.start(
                        f"client{i}", "client", "--own-port", str(fresh_port())
                    )
                )
            for client in clients:
                await client.expect("READY", READY_DEADLINE * 2, "a client process")
        await self.populated()  # the stores filled meanwhile: nothing else uses CPU now

        raw_sqlite = peers.SqliteUpserts(str(self.tmp / "raw-sqlite3.db"), SQLITE_SYNC)
        raw_redis = (
            await trio.to_thread.run_sync(peers.RedisGets, self.redis_port)
            if self.redis_port is not None
            else None
        )
        own = tractor_reg.TCPAddress("127.0.0.1", fresh_port())
        lat_peers: dict[str, RawPeer] = {}
        reg16_peers: dict[str, list[RawPeer]] = {}
        opened: list[RawPeer] = []
        try:
            for backend in cfg.backends:
                peer = await open_peer(regs[backend].tcp, "lat", f"bench-lat-{backend}")
                lat_peers[backend] = peer
                opened.append(peer)
                reg16_peers[backend] = []
                for k in range(CONC):
                    peer = await open_peer(regs[backend].tcp, "reg16", f"{backend}-{k}")
                    reg16_peers[backend].append(peer)
                    opened.append(peer)
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(
                    tractor_reg.open_root_actor(
                        name="bench-suite",
                        registry_addrs=[own],
                        enable_transports=["tcp", "uds"],
                        ensure_registry=True,
                    )
                )
                portals: dict[tuple[str, str], Any] = {}
                for backend in cfg.backends:
                    for tr in TRANSPORTS:
                        portals[backend, tr] = await stack.enter_async_context(
                            tractor_reg.get_registry(regs[backend].addr(tr))
                        )
                echo1: dict[str, FrameStream] = {}
                echo16: dict[str, list[FrameStream]] = {}
                for tr in TRANSPORTS:
                    stream = await open_raw(tr, echo_port, echo_uds)
                    stack.push_async_callback(stream.aclose)
                    echo1[tr] = FrameStream(stream)
                    echo16[tr] = []
                    for _ in range(CONC):
                        stream = await open_raw(tr, echo_port, echo_uds)
                        stack.push_async_callback(stream.aclose)
                        echo16[tr].append(FrameStream(stream))
                main = Main(
                    regs,
                    seconds,
                    portals,
                    echo,
                    echo_port,
                    echo_uds,
                    echo2,
                    echo2_port,
                    echo2_uds,
                    echo1,
                    echo16,
                    targets,
                    clients,
                    pyro,
                    lat_peers,
                    reg16_peers,
                    raw_sqlite,
                    raw_redis,
                )
                for rep in range(cfg.reps):
                    self.progress(f"main, repetition {rep + 1}/{cfg.reps}")
                    await self.main_rep(rep, main)
        finally:
            await close_peers(opened)
            raw_sqlite.close()
            if raw_redis is not None:
                raw_redis.close()
            everything = [echo, echo2, *targets.values(), *clients]
            everything += self.pyro_children.values()
            await self.stop(everything)
            await self.stop([r.child for r in [*seconds.values(), *regs.values()]])
        for tr in TRANSPORTS:  # the least a find_actor can cost, per repetition
            e, c = res.get(f"echo.{tr}"), res.get(f"connect.{tr}")
            if e is not None and c is not None:
                floor = res.metric(
                    f"floor.{tr}", "lookup", "floor: echo rt + connect+rt+close", "-", tr, "ratio"
                )
                for ev, cv in zip(e.values, c.values, strict=False):
                    floor.add(cv / (ev + cv))

    async def group(self, rep: int, n: int, chunks: int, rows: list[Sample]) -> None:
        """``n`` timed operations of every row, interleaved in ``chunks`` slices."""
        samplers = {s.metric.key: s.sampler for s in rows}
        servers = {s.metric.key: s.server for s in rows}
        results = await interleaved(samplers, servers, ["self"], n, chunks, rep)
        for s in rows:
            rate, lat, cpu = results[s.metric.key]
            s.metric.add(rate, lat, cpu, n)

    async def main_rep(self, rep: int, mn: Main) -> None:
        cfg, res = self.cfg, self.res
        order = rotated(list(cfg.backends), rep)
        w, n, nf = cfg.warmup, cfg.n, cfg.n_find
        conc = cfg.per_task * CONC
        echo_srv = [mn.echo.proc.pid]

        def reg_pid(b: str) -> list[int]:
            return [mn.regs[b].child.proc.pid]

        def pyro_label(store: str) -> str:
            return "pyro5 mem" if store == "memory" else "pyro5 sql"

        for tr in TRANSPORTS:
            # one client, sequential: echo, registrar lookups (and on TCP the peers)
            rows = [
                Sample(
                    res.metric(
                        f"echo.{tr}", "lookup", "echo round trip, 1 conn (baseline)", "-", tr, n=n
                    ),
                    op_sampler(echo_op(mn.echo1[tr])),
                    echo_srv,
                )
            ]
            warm: list[Callable[[], Awaitable[object]]] = [echo_op(mn.echo1[tr])]
            for b in order:
                op = lookup_op(mn.portals[b, tr])
                warm.append(op)
                rows.append(
                    Sample(
                        res.metric(
                            f"lookup.{b}.{tr}", "lookup", "registrar lookup, 1 client", b, tr, n=n
                        ),
                        op_sampler(op),
                        reg_pid(b),
                    )
                )
            if tr == "tcp":
                for store, port in mn.pyro.items():
                    rows.append(
                        Sample(
                            res.metric(
                                f"pyro.lookup.{store}",
                                "peer",
                                "Pyro5 NS lookup, 1 client",
                                pyro_label(store),
                                "tcp",
                                n=n,
                            ),
                            thread_sampler(peers.pyro_lookups, port, TARGET_NAME),
                            [self.pyro_children[store].proc.pid],
                        )
                    )
                if mn.raw_redis is not None and self.redis_child is not None:
                    rows.append(
                        Sample(
                            res.metric(
                                "raw.redis_get", "peer", "redis-py GET, 1 conn", "raw", "tcp", n=n
                            ),
                            thread_sampler(mn.raw_redis.run),
                            [self.redis_child.proc.pid],
                        )
                    )
            await warm_up(warm, w)
            await self.group(rep, n, CHUNKS, rows)

            # find_actor against a bare connect + round trip + close
            rows = []
            warm = []
            for b in order:
                op = find_op(mn.regs[b].addr(tr), tr)
                warm.append(op)
                rows.append(
                    Sample(
                        res.metric(
                            f"find.{b}.{tr}",
                            "lookup",
                            "find_actor (lookup+connect+hs+close)",
                            b,
                            tr,
                            n=nf,
                        ),
                        op_sampler(op),
                        [mn.regs[b].child.proc.pid, mn.targets[b].proc.pid],
                    )
                )
            op = connect_op(tr, mn.echo_port, mn.echo_uds)
            warm.append(op)
            rows.append(
                Sample(
                    res.metric(
                        f"connect.{tr}",
                        "lookup",
                        "echo connect+1 rt+close (reference)",
                        "-",
                        tr,
                        n=nf,
                    ),
                    op_sampler(op),
                    echo_srv,
                )
            )
            op = two_server_floor_op(mn.echo1[tr], tr, mn.echo2_port, mn.echo2_uds)
            warm.append(op)
            rows.append(
                Sample(
                    res.metric(
                        f"floor2.{tr}",
                        "lookup",
                        "floor, 2 servers: echo + connect+rt+close",
                        "-",
                        tr,
                        n=nf,
                    ),
                    op_sampler(op),
                    [mn.echo.proc.pid, mn.echo2.proc.pid],
                )
            )
            await warm_up(warm, max(5, w // 4))
            await self.group(rep, nf, CHUNKS // 2, rows)

            # 16 concurrent clients
            rows = [
                Sample(
                    res.metric(
                        f"echo16.{tr}",
                        "lookup",
                        "echo, 16 tasks x own conn (reference)",
                        "-",
                        tr,
                        n=conc,
                    ),
                    conc_sampler([echo_op(f) for f in mn.echo16[tr]]),
                    echo_srv,
                )
            ]
            for b in order:
                rows.append(
                    Sample(
                        res.metric(
                            f"lookup16t.{b}.{tr}",
                            "lookup",
                            "lookups, 16 tasks, one shared portal",
                            b,
                            tr,
                            n=conc,
                        ),
                        conc_sampler([lookup_op(mn.portals[b, tr])] * CONC),
                        reg_pid(b),
                    )
                )
            if tr == "tcp":
                for store, port in mn.pyro.items():
                    rows.append(
                        Sample(
                            res.metric(
                                f"pyro.lookup16.{store}",
                                "peer",
                                "Pyro5 NS lookup, 16 threads x own proxy",
                                pyro_label(store),
                                "tcp",
                                n=conc,
                            ),
                            thread_sampler(
                                peers.pyro_lookups16, port, TARGET_NAME, per_thread=True
                            ),
                            [self.pyro_children[store].proc.pid],
                        )
                    )
            await self.group(rep, conc, CONC16_CHUNKS, rows)
            if mn.clients:
                for b in order:
                    m = res.metric(
                        f"lookup16p.{b}.{tr}",
                        "lookup",
                        "lookups, 16 client processes",
                        b,
                        tr,
                        n=conc,
                    )
                    meter = CpuMeter([c.proc.pid for c in mn.clients], reg_pid(b))
                    reg = mn.regs[b]
                    assert reg.uds is not None
                    rate, lat = await run_clients_round(
                        mn.clients,
                        tr,
                        cfg.per_task,
                        max(2, w // 16),
                        meter.start,
                        registrar=(reg.tcp.port, reg.uds.path),
                    )
                    m.add(rate, lat, meter.stop(), len(lat))

        # registrations, one client (each one committed before the next is sent)
        nr, ptr = cfg.n_reg, cfg.per_task_reg
        rows = []
        warm = []
        for b in order:
            op = register_op(mn.lat_peers[b], LAT_PORT)
            warm.append(op)
            rows.append(
                Sample(
                    res.metric(
                        f"reg.{b}", "reg", "register_actor, 1 client, sequential", b, "tcp", n=nr
                    ),
                    op_sampler(op),
                    reg_pid(b),
                )
            )
        for store, port in mn.pyro.items():
            rows.append(
                Sample(
                    res.metric(
                        f"pyro.register.{store}",
                        "peer",
                        "Pyro5 NS register, 1 client",
                        pyro_label(store),
                        "tcp",
                        n=nr,
                    ),
                    thread_sampler(peers.pyro_registers, port, f"r{rep}"),
                    [self.pyro_children[store].proc.pid],
                )
            )
        rows.append(
            Sample(
                res.metric(
                    "raw.sqlite3",
                    "peer",
                    f"sqlite3 upsert+commit, WAL, synchronous={SQLITE_SYNC}",
                    "raw",
                    "-",
                    n=nr,
                ),
                thread_sampler(mn.raw_sqlite.run),
                [],
            )
        )
        await warm_up(warm, max(5, nr // 10))
        await self.group(rep, nr, CHUNKS // 2, rows)

        # registrations, 16 clients at once
        rows = []
        for b in order:
            ops = [register_op(p, REG16_BASE_PORT + k) for k, p in enumerate(mn.reg16_peers[b])]
            rows.append(
                Sample(
                    res.metric(
                        f"reg16.{b}",
                        "reg",
                        "register_actor, 16 clients x own conn",
                        b,
                        "tcp",
                        n=ptr * CONC,
                    ),
                    conc_sampler(ops),
                    reg_pid(b),
                )
            )
        for store, port in mn.pyro.items():
            rows.append(
                Sample(
                    res.metric(
                        f"pyro.register16.{store}",
                        "peer",
                        "Pyro5 NS register, 16 threads",
                        pyro_label(store),
                        "tcp",
                        n=ptr * CONC,
                    ),
                    thread_sampler(peers.pyro_registers16, port, f"c{rep}", per_thread=True),
                    [self.pyro_children[store].proc.pid],
                )
            )
        await self.group(rep, ptr * CONC, CONC16_CHUNKS, rows)
        await self.wake_rows(rep, order, mn.regs, mn.seconds, mn.portals)

    async def start_pyro(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        children: dict[str, Child] = {}
        for store in PYRO_STORES:
            port = fresh_port()
            args = ["--tcp-port", str(port)]
            if store == "sqlite":
                args += ["--storage", f"sql:{self.tmp / 'stores' / 'pyro5-ns.db'}"]
            children[store] = await self.cluster.start(f"pyro-{store}", "pyro-ns", *args)
            ports[store] = port
        self.pyro_children = children
        for store, child in children.items():
            await child.expect("READY", READY_DEADLINE, f"the Pyro5 name server ({store})")
            await trio.to_thread.run_sync(peers.pyro_prepare, ports[store], TARGET_NAME)
        return ports

    async def wake_rows(
        self,
        rep: int,
        order: list[str],
        regs: dict[str, Reg],
        seconds: dict[str, Reg],
        portals: dict[tuple[str, str], Any],
    ) -> None:
        res = self.res
        for b in order:
            configs = [("same", regs[b])] + ([("cross", seconds[b])] if b in seconds else [])
            for kind, via in configs:
                lat: list[float] = []
                for i in range(self.cfg.wake_n):
                    if kind == "cross":
                        # Arrive at a random phase of the other registrar's store polling
                        # (sqlite:// polls every 0.1 s), not in step with it.
                        await trio.sleep(random.uniform(0.0, 0.1))
                    name = f"wake-{kind}-{rep}-{i}"
                    port = WAKE_BASE_PORT + (rep * self.cfg.wake_n + i) * 2 + (kind == "cross")
                    lat.append(await self.wake_once(portals[b, "tcp"], via, name, port))
                label = (
                    "wait_for_actor, same registrar"
                    if kind == "same"
                    else "wait_for_actor, registered via 2nd registrar"
                )
                m = res.metric(
                    f"wake.{kind}.{b}", "wake", label, b, "tcp", unit="ms", n=self.cfg.wake_n
                )
                m.add(statistics.median(lat) * 1e3, lat)

    async def wake_once(self, portal: Any, via: Reg, name: str, port: int) -> float:
        """A waiter parks in ``wait_for_actor(name)``; then ``name`` registers (through
        ``via``): seconds from sending the registration to the waiter's answer."""
        peer = await open_peer(via.tcp, name, f"{name}-uuid")
        woke: list[float] = []
        try:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:

                    async def waiter() -> None:
                        found = await portal.run_from_ns("self", "wait_for_actor", name=name)
                        woke.append(time.perf_counter())
                        if not found:
                            raise BenchError(f"wait_for_actor({name!r}) answered {found!r}")

                    nursery.start_soon(waiter)
                    # Poll the registrar until the waiter is parked: a benchmark, not a test.
                    while (await portal.run_from_ns("self", "stats"))["waiters"] < 1:  # noqa: ASYNC110
                        await trio.sleep(0.001)
                    t0 = time.perf_counter()
                    await peer.register(["127.0.0.1", port])
        finally:
            await close_peers([peer])
        return woke[0] - t0

    # -- phase 3: storms ------------------------------------------------------------------

    async def fire(
        self,
        peers_: list[RawPeer],
        meter: CpuMeter,
        call: Callable[[int, RawPeer], Awaitable[object]],
    ) -> tuple[float, list[float]]:
        """Every connection sends its call at once; the clock runs until the last answer:
        (calls/s, time from the start to each answer)."""
        go = trio.Event()
        all_parked = trio.Event()
        parked = 0
        done = [0.0] * len(peers_)
        pc = time.perf_counter

        async def one(i: int, peer: RawPeer) -> None:
            nonlocal parked
            parked += 1
            if parked == len(peers_):
                all_parked.set()
            await go.wait()
            await call(i, peer)
            done[i] = pc()

        async with trio.open_nursery() as nursery:
            for i, peer in enumerate(peers_):
                nursery.start_soon(one, i, peer)
            await all_parked.wait()
            meter.start()
            t0 = pc()
            go.set()
        t1 = pc()
        return len(peers_) / (t1 - t0), [t - t0 for t in done]

    async def storm_once(
        self, size: int, backend: str, reg: Reg, peers_: list[RawPeer], empty_after: bool
    ) -> None:
        res = self.res
        pid = [reg.child.proc.pid]

        async def register(i: int, peer: RawPeer) -> object:
            return await peer.register(["127.0.0.1", STORM_BASE_PORT + i])

        async def unregister(i: int, peer: RawPeer) -> object:
            return await peer.unregister()

        m = res.metric(
            f"storm.{size}.{backend}",
            "storm",
            f"storm of {size:,} concurrent registrations",
            backend,
            "tcp",
            n=size,
        )
        meter = CpuMeter(["self"], pid)
        rate, acks = await self.fire(peers_, meter, register)
        m.add(rate, acks, meter.stop(), size)
        if not empty_after:
            return
        m = res.metric(
            f"unstorm.{size}.{backend}",
            "storm",
            f"then {size:,} concurrent unregistrations",
            backend,
            "tcp",
            n=size,
        )
        meter = CpuMeter(["self"], pid)
        rate, acks = await self.fire(peers_, meter, unregister)
        m.add(rate, acks, meter.stop(), size)

    async def storms(self) -> None:
        cfg = self.cfg
        for size in STORM_SIZES:
            reps = cfg.storm_reps.get(size, 0)
            if not reps:
                continue
            together = size * len(cfg.backends) <= 4000  # all backends' connections at once
            groups = [list(cfg.backends)] if together else [[b] for b in cfg.backends]
            for group in groups:
                regs: dict[str, Reg] = {}
                conns: dict[str, list[RawPeer]] = {}
                try:
                    for b in group:
                        regs[b] = await self.spawn_registrar(
                            f"reg-storm{size}-{b}", self.url(b, f"storm-{size}"), False, 0
                        )
                    for b in group:
                        regs[b] = await self.await_registrar(regs[b])
                    for b in group:
                        self.progress(f"storm of {size:,}: opening {size:,} connections to {b}")
                        conns[b] = await open_storm_peers(regs[b].tcp, size, f"s{size}")
                    for rep in range(reps):
                        self.progress(
                            f"storm of {size:,}, {'/'.join(group)}, repetition {rep + 1}/{reps}"
                        )
                        for b in rotated(group, rep):
                            # the unregistration storm empties the registry for the next one
                            await self.storm_once(size, b, regs[b], conns[b], rep < reps - 1)
                finally:
                    for peer_list in conns.values():
                        await close_peers(peer_list)
                    # Disposable: not worth a graceful goodbye to thousands of peers.
                    await self.stop([r.child for r in regs.values()], grace=0.5)

    # -- phase 4: scale -------------------------------------------------------------------

    async def scale(self) -> None:
        cfg, res = self.cfg, self.res
        await self.populated()
        regs: dict[tuple[str, int], Reg] = {}
        try:
            for b in cfg.backends:
                for size in SCALE_SIZES:
                    label = f"reg-scale-{b}-{size}"
                    if b == "memory":
                        regs[b, size] = await self.spawn_registrar(label, "memory://", False, size)
                    else:
                        regs[b, size] = await self.spawn_registrar(
                            label, self.stores[b][str(size)], False, 0
                        )
            for key, reg in regs.items():
                regs[key] = await self.await_registrar(reg, BIG_READY_DEADLINE)
            own = tractor_reg.TCPAddress("127.0.0.1", fresh_port())
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(
                    tractor_reg.open_root_actor(
                        name="bench-scale",
                        registry_addrs=[own],
                        enable_transports=["tcp"],
                        ensure_registry=True,
                    )
                )
                ops: dict[str, Callable[[], Awaitable[object]]] = {}
                servers: dict[str, list[int]] = {}
                for (b, size), reg in regs.items():
                    portal = await stack.enter_async_context(tractor_reg.get_registry(reg.tcp))
                    ops[f"{b}.{size}"] = scale_lookup_op(portal, size)
                    servers[f"{b}.{size}"] = [reg.child.proc.pid]
                samplers = {key: op_sampler(op) for key, op in ops.items()}
                for rep in range(cfg.reps):
                    self.progress(f"scale, repetition {rep + 1}/{cfg.reps}")
                    await warm_up(list(ops.values()), max(20, cfg.scale_n // 10))
                    results = await interleaved(
                        samplers, servers, ["self"], cfg.scale_n, CHUNKS, rep
                    )
                    for which, (rate, lat, cpu) in results.items():
                        b, size_s = which.split(".")
                        m = res.metric(
                            f"scale.{size_s}.{b}",
                            "scale",
                            f"lookups, {int(size_s):,} entries",
                            b,
                            "tcp",
                            n=cfg.scale_n,
                        )
                        m.add(rate, lat, cpu, cfg.scale_n)
            for (b, size), reg in regs.items():
                mb = rss_mb(reg.child.proc.pid)
                if mb is not None:
                    res.metric(
                        f"rss.{size}.{b}", "cold", f"registrar RSS, {size:,} entries", b, unit="MB"
                    ).add(mb)
        finally:
            await self.stop([r.child for r in regs.values()])

    # -- phase 5: cold start --------------------------------------------------------------

    async def cold(self) -> None:
        cfg, res = self.cfg, self.res
        for rep in range(cfg.cold_reps):
            self.progress(f"cold start, repetition {rep + 1}/{cfg.cold_reps}")
            # memory:// has no store to load; its reference rows (start + fill in-process)
            # only run in full runs.
            backends = [b for b in cfg.backends if b != "memory" or not cfg.quick]
            if not backends:
                return
            for b in rotated(backends, rep):
                for store in rotated([str(BIG), "empty"], rep):
                    seconds, mb = await self.cold_once(b, store, rep)
                    if b == "memory":
                        label = (
                            f"start + fill {BIG:,} in-process (reference)"
                            if store != "empty"
                            else "start, empty (reference)"
                        )
                    else:
                        label = (
                            f"cold start, {BIG:,} entries"
                            if store != "empty"
                            else "cold start, empty store"
                        )
                    res.metric(f"cold.{store}.{b}", "cold", label, b, unit="s").add(seconds)
                    if mb is not None:
                        what = f"{BIG:,} entries" if store != "empty" else "empty"
                        res.metric(
                            f"rss.{store}.{b}", "cold", f"registrar RSS, {what}", b, unit="MB"
                        ).add(mb)

    async def cold_once(self, backend: str, store: str, rep: int) -> tuple[float, float | None]:
        """Seconds from spawning a registrar on ``store`` to its first answered lookup."""
        big = store != "empty"
        name = scale_uid(BIG // 2)[0]
        for attempt in range(3):
            label = f"reg-cold-{backend}-{store}-{rep}-{attempt}"
            t0 = time.perf_counter()
            if backend == "memory":
                reg = await self.spawn_registrar(label, "memory://", False, BIG if big else 0)
            else:
                reg = await self.spawn_registrar(label, self.stores[backend][store], False, 0)
            try:
                try:
                    await reg.child.expect(
                        "READY", BIG_READY_DEADLINE, f"{label} to open its store"
                    )
                except BenchError:
                    if reg.child.proc.poll() is None or attempt == 2:
                        raise
                    continue  # its free port was taken meanwhile: start another
                found = await first_lookup(reg.tcp, name)
                t1 = time.perf_counter()
                if big and not found:
                    raise BenchError(f"{label}: {name!r} not found in the {BIG:,}-entry store")
                return t1 - t0, rss_mb(reg.child.proc.pid)
            finally:
                await self.stop([reg.child])
        raise BenchError(f"no cold start of {backend} {store} succeeded")


def scale_lookup_op(portal: Any, size: int) -> Callable[[], Awaitable[object]]:
    """Lookups cycling over up to 64 entries spread evenly across the registry."""
    count = min(size, 64)
    names = [scale_uid(j * size // count)[0] for j in range(count)]
    state = [0]

    async def op() -> object:
        i = state[0]
        state[0] = (i + 1) % count
        found = await portal.run_from_ns("self", "find_actor", name=names[i])
        if not found:
            raise BenchError(f"scale lookup of {names[i]!r} found nothing")
        return found

    return op


async def first_lookup(addr: tractor_reg.Address, name: str) -> Any:
    """Connect, handshake and ask ``find_actor(name)`` once; its answer."""
    stream = await open_stream(addr)
    chan = Channel(stream)
    try:
        hello = Handshake(
            name="cold-probe", uuid=f"cold-{os.getpid()}", pid=os.getpid(), is_registrar=False
        )
        await chan.handshake(hello, 10.0)
        peer = RawPeer(chan, ("cold-probe", hello.uuid))
        return await peer.call("find_actor", name=name)
    finally:
        await chan.aclose()


# -- the run -----------------------------------------------------------------------------


async def run_phases(suite: Suite) -> None:
    cfg = suite.cfg
    if "redis" in cfg.backends:
        await suite.start_redis()
        if suite.redis_port is None:
            cfg.backends = [b for b in cfg.backends if b != "redis"]
    phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("populate", suite.populate),
        ("main", suite.main_phase),
        ("storms", suite.storms),
        ("scale", suite.scale),
        ("cold", suite.cold),
    ]
    for name, phase in phases:
        started = time.perf_counter()
        suite.progress(f"phase {name}")
        await phase()
        suite.phases[name] = time.perf_counter() - started


# -- report ------------------------------------------------------------------------------


def _fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ops/s":
        return f"{value:,.0f}"
    if unit == "MB":
        return f"{value:.1f}"
    if unit == "s":
        return f"{value:.3f}"
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:.3f}"


def _fmt_lat(us: float | None) -> str:
    if us is None:
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:.2f}s"
    if us >= 1e4:
        return f"{us / 1e3:.0f}ms"
    if us >= 1e3:
        return f"{us / 1e3:.1f}ms"
    return f"{us:.0f}us"


def report(suite: Suite, out: Callable[[str], None]) -> dict[str, Any]:
    res = suite.res
    header = (
        f"{'scenario':<46} {'backend':<9} {'tr':<3} {'n/rep':>6} {'median':>9} "
        f"{'min-max':>19} {'unit':<5} {'p50':>7} {'p99':>7}"
    )
    out("")
    out(header)
    out("=" * len(header))
    summaries: dict[str, Any] = {}
    for section, title in SECTIONS:
        rows = [m for m in res.metrics.values() if m.section == section and m.values]
        if not rows:
            continue
        out(f"-- {title}")
        for m in rows:
            s = m.summary()
            summaries[m.key] = s
            span = f"{_fmt_value(s['min'], m.unit)}-{_fmt_value(s['max'], m.unit)}"
            n = str(m.n) if m.n else ""
            out(
                f"{m.label:<46} {m.backend:<9} {m.transport:<3} {n:>6} "
                f"{_fmt_value(s['median'], m.unit):>9} {span:>19} {m.unit:<5} "
                f"{_fmt_lat(s['p50_us']):>7} {_fmt_lat(s['p99_us']):>7}"
            )
    out(
        "(medians over repetitions, min-max across them; p50/p99 pooled single-operation latencies;"
    )
    out(" storm rows: time from the start until 50% / 99% of the answers arrived)")

    out("")
    out("Targets (ratios measured in this run: median of per-repetition ratios, min-max):")
    checks: list[dict[str, Any]] = []
    for t in targets_for(suite.cfg):
        r = evaluate(t, res)
        if r is None:
            out(f"  [issue {t.issue}] {t.name:<52} not measured (skipped)")
            continue
        checks.append(r)
        verdict = "PASS" if r["pass"] else "FAIL"
        out(
            f"  [issue {t.issue}] {t.name:<52} {r['value']:8.3f} [{r['min']:.3f}-{r['max']:.3f}]"
            f"  {t.op} {t.threshold:g}  {verdict}"
        )
    out("Information (no target):")
    info: list[dict[str, Any]] = []
    for t in info_for(suite.cfg):
        r = evaluate(t, res)
        if r is None:
            continue
        info.append(r)
        out(f"  {t.name:<62} {r['value']:8.3f} [{r['min']:.3f}-{r['max']:.3f}]")
    failed = [c for c in checks if not c["pass"]]
    out("")
    out(
        f"targets: all {len(checks)} PASS"
        if not failed
        else f"targets: {len(checks) - len(failed)} PASS, {len(failed)} FAIL: "
        + "; ".join(c["name"] for c in failed)
    )
    for note in suite.notes:
        out(f"note: {note}")
    return {
        "benchmark": "suite",
        "config": asdict(suite.cfg),
        "machine": machine_info(suite),
        "phases_s": suite.phases,
        "metrics": summaries,
        "targets": checks,
        "information": info,
        "all_targets_pass": not failed,
        "notes": suite.notes,
    }


def machine_info(suite: Suite) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as fh:
        mem_gb = int(fh.readline().split()[1]) / 1024 / 1024
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": mem_gb,
        "trio": trio.__version__,
        "tractor_reg": tractor_reg.__version__,
        "sqlite": sqlite3.sqlite_version,
        "redis_server": suite.redis_version,
        "redis_py": peers.version_of("redis"),
        "pyro5": suite.pyro_version,
    }


# -- entry point -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short run (about a minute)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (median reported)")
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=str(DEFAULT_JSON),
        help=f"results as JSON ({DEFAULT_JSON.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--png",
        metavar="PATH",
        default=str(DEFAULT_PNG),
        help=f"chart as PNG ({DEFAULT_PNG.relative_to(ROOT)})",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    parser.add_argument(
        "--no-procs", action="store_true", help=f"skip the {CONC} client processes rows"
    )
    parser.add_argument(
        "--procs", action="store_true", help=f"with --quick: also the {CONC} client processes rows"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the Pyro5 rows")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated subset of memory,sqlite,redis",
    )


def run_suite(args: argparse.Namespace) -> tuple[int, dict[str, Any] | None]:
    """Run the suite; (exit status, results). Status 0 whatever the ratios."""
    cfg = make_config(args)
    started = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    load_before = machine_load()
    soft, hard = raise_nofile()
    mode = "quick" if cfg.quick else "full"
    load = " ".join(f"{load_before[k]:.2f}" for k in ("loadavg_1m", "loadavg_5m", "loadavg_15m"))
    print(
        f"tractor_reg benchmark suite ({mode}): {cfg.reps} repetitions, backends "
        f"{', '.join(cfg.backends)}; python {platform.python_version()}, {os.cpu_count()} cpus, "
        f"open files {soft}/{hard}, load average {load}",
        flush=True,
    )
    for size in STORM_SIZES:
        # One fd per storm connection here and one in the registrar, plus a margin.
        if cfg.storm_reps.get(size) and soft != -1 and soft < size + 1024:
            cfg.storm_reps[size] = 0
            print(f"note: open-files limit {soft} too low for a storm of {size:,}: skipped")
    suite_box: list[Suite] = []

    async def run(tmp: Path) -> None:
        cluster = Cluster(tmp)
        suite = Suite(cfg, cluster, progress)
        suite_box.append(suite)
        try:
            await run_phases(suite)
        finally:
            progress("stopping processes")
            await suite.stop_everything()
            await cluster.stop_all()

    code, _ = run_isolated(run, "benchmark suite")
    if code:
        return code, None
    suite = suite_box[0]
    result = report(suite, print)
    result["load"] = {"before": load_before, "after": machine_load()}
    result["elapsed_s"] = time.perf_counter() - started
    after = result["load"]["after"]
    print(
        f"(run took {result['elapsed_s']:.1f} s; load average at the end "
        f"{after['loadavg_1m']:.2f} {after['loadavg_5m']:.2f} {after['loadavg_15m']:.2f})"
    )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {path}")
    if not args.no_chart and args.png:
        from bench import chart

        written = chart.write_chart(result, Path(args.png))
        print(f"chart written to {args.png}" if written else f"chart skipped: {chart.MISSING}")
    return 0, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="tractor_reg benchmark suite: every scenario, backend and peer, one table.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    status, _ = run_suite(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
