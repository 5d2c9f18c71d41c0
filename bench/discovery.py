"""Discovery benchmark: registrar lookups and ``find_actor`` vs a bare trio echo.

Run from the repository root: ``python -m bench [--quick] [--n N] [--reps R] [--json PATH]``.
See ``bench/README.md`` for what every figure means and the targets.

Every server (the echo baseline, the registrar, the target actor, the 16 client
processes) is a separate OS process started from here (``python -m bench._roles``), in
its own process group, awaited by the ``READY`` line it prints (with a deadline), and
stopped at the end whatever happened (stdin EOF, then SIGINT, then SIGKILL of the group).
The measuring client runs in this process. Repetitions are interleaved (echo, lookup,
find_actor, ... then the next repetition) so that machine noise hits every row alike;
each ratio is the median of the per-repetition ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import trio

import tractor_reg
from bench._roles import FrameStream

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ("tcp", "uds")
CONCURRENCY = 16
READY_DEADLINE = 20.0
TARGET_NAME = "target"

#: (row measured, baseline row, minimum ratio) per transport; PASS/FAIL is printed.
TARGETS: list[tuple[str, str, float]] = [
    ("lookup", "echo", 0.70),
    ("find", "echo", 0.25),
]
#: Ratios printed for information only.
INFO_RATIOS: list[tuple[str, str]] = [
    ("find", "connect"),
    ("lookup16t", "echo"),
    ("lookup16p", "echo"),
]

ROWS: dict[str, str] = {
    "echo": "echo round trip, 1 conn (baseline)",
    "lookup": "registrar lookup, reused portal",
    "find": "find_actor (lookup+connect+hs+close)",
    "connect": "echo connect+1 rt+close (reference)",
    "echo16": "echo, 16 tasks x own conn (reference)",
    "lookup16t": "lookups, 16 tasks, one shared portal",
    "lookup16p": "lookups, 16 client processes",
}
ROW_ORDER = ["echo", "lookup", "find", "connect", "echo16", "lookup16t", "lookup16p"]

#: Pids of process groups we started and have not reaped yet (last-resort cleanup).
_LIVE_GROUPS: set[int] = set()


class BenchError(RuntimeError):
    """The benchmark itself could not run (a server did not start, a lookup failed)."""


# -- results ----------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    transport: str
    n: int
    rates: list[float] = field(default_factory=list)  # ops/s, one per repetition
    lat: list[float] = field(default_factory=list)  # seconds, pooled over repetitions
    cpu_client: list[float] = field(default_factory=list)  # CPU us per op, per repetition
    cpu_server: list[float] = field(default_factory=list)

    def add(self, rate: float, lat: list[float], ops: int, cpu: tuple[int, int] | None) -> None:
        self.rates.append(rate)
        self.lat.extend(lat)
        if cpu is not None and ops:
            self.cpu_client.append(cpu[0] / 1e3 / ops)
            self.cpu_server.append(cpu[1] / 1e3 / ops)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.lat)
        return {
            "name": ROWS[self.key],
            "transport": self.transport,
            "ops_per_rep": self.n,
            "reps": len(self.rates),
            "ops_per_s_median": statistics.median(self.rates) if self.rates else None,
            "ops_per_s_min": min(self.rates) if self.rates else None,
            "ops_per_s_max": max(self.rates) if self.rates else None,
            "ops_per_s_each": self.rates,
            "p50_us": _pct(lat, 0.50) * 1e6 if lat else None,
            "p99_us": _pct(lat, 0.99) * 1e6 if lat else None,
            "cpu_client_us_per_op": _median(self.cpu_client),
            "cpu_server_us_per_op": _median(self.cpu_server),
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _pct(sorted_values: list[float], q: float) -> float:
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


# -- CPU accounting ---------------------------------------------------------------------


def cpu_ns(pid: int | str) -> int | None:
    """Nanoseconds of CPU all threads of ``pid`` ran so far (Linux schedstat), else None."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError, ProcessLookupError),
                open(f"/proc/{pid}/task/{tid}/schedstat") as fh,
            ):
                total += int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


class CpuMeter:
    """CPU time spent by the measuring side and the serving side over one sample."""

    def __init__(self, client: list[int | str], server: list[int]) -> None:
        self.client, self.server = client, server
        self._start: tuple[int, int] | None = None

    def _read(self) -> tuple[int, int] | None:
        c = [cpu_ns(p) for p in self.client]
        s = [cpu_ns(p) for p in self.server]
        if any(v is None for v in c + s):
            return None
        return sum(v for v in c if v is not None), sum(v for v in s if v is not None)

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> tuple[int, int] | None:
        end = self._read()
        if self._start is None or end is None:
            return None
        return end[0] - self._start[0], end[1] - self._start[1]


# -- timing loops -----------------------------------------------------------------------

Op = Callable[[], Awaitable[object]]


def _nothing() -> None:
    return None


async def timed(
    op: Op, n: int, warmup: int, on_start: Callable[[], None] = _nothing
) -> tuple[float, list[float]]:
    """``n`` sequential calls of ``op`` after ``warmup`` untimed ones: (ops/s, latencies).

    ``on_start`` is called between the warm-up and the timed calls.
    """
    for _ in range(warmup):
        await op()
    on_start()
    pc = time.perf_counter
    lat = [0.0] * n
    t0 = pc()
    for i in range(n):
        s = pc()
        await op()
        lat[i] = pc() - s
    return n / (pc() - t0), lat


async def timed_concurrent(
    ops: list[Op], per_task: int, warmup: int, on_start: Callable[[], None] = _nothing
) -> tuple[float, list[float]]:
    """One task per op, each doing ``per_task`` sequential calls: (aggregate ops/s, latencies)."""
    async with trio.open_nursery() as nursery:
        for op in ops:
            nursery.start_soon(timed, op, 0, warmup)
    on_start()
    pc = time.perf_counter
    lat: list[float] = []

    async def worker(op: Op) -> None:
        for _ in range(per_task):
            s = pc()
            await op()
            lat.append(pc() - s)

    t0 = pc()
    async with trio.open_nursery() as nursery:
        for op in ops:
            nursery.start_soon(worker, op)
    return len(ops) * per_task / (pc() - t0), lat


# -- the baseline client ----------------------------------------------------------------


def _request(cid: int) -> dict[str, Any]:
    # Shaped like the Call frame of a registrar lookup, so both carry similar payloads.
    kwargs = {"name": TARGET_NAME}
    return {"t": "call", "cid": cid, "ns": "self", "func": "find_actor", "kwargs": kwargs}


async def open_raw(transport: str, tcp_port: int, uds_path: str) -> trio.abc.Stream:
    if transport == "tcp":
        return await trio.open_tcp_stream("127.0.0.1", tcp_port)
    return await trio.open_unix_socket(uds_path)


def echo_op(frames: FrameStream) -> Op:
    counter = iter(range(1, 1 << 62))

    async def op() -> object:
        await frames.send(_request(next(counter)))
        return await frames.recv()

    return op


async def exchange_once(stream: trio.abc.Stream) -> object:
    """One round trip on a fresh connection, then close it."""
    try:
        frames = FrameStream(stream)
        await frames.send(_request(1))
        return await frames.recv()
    finally:
        await stream.aclose()


def connect_op(transport: str, tcp_port: int, uds_path: str) -> Op:
    async def op() -> object:
        return await exchange_once(await open_raw(transport, tcp_port, uds_path))

    return op


async def open_bare(transport: str, tcp_port: int, uds_path: str) -> trio.SocketStream:
    """A plain trio socket connect: no name resolution, no happy-eyeballs tasks."""
    if transport == "tcp":
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        target: str | tuple[str, int] = ("127.0.0.1", tcp_port)
    else:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        target = uds_path
    connected = False
    try:
        await sock.connect(target)
        connected = True
    finally:
        if not connected:
            sock.close()
    return trio.SocketStream(sock)


def two_server_floor_op(echo: FrameStream, transport: str, tcp_port: int, uds_path: str) -> Op:
    """The least a find_actor can cost with bare trio: a round trip to one server (the
    lookup) then connect, round trip and close to a second server process (the target).

    Two processes matter: each sleeps while the other works, and waking a sleeping
    process costs more than keeping one busy (the one-server floor hides that).
    """
    counter = iter(range(1, 1 << 62))

    async def op() -> object:
        await echo.send(_request(next(counter)))
        await echo.recv()
        return await exchange_once(await open_bare(transport, tcp_port, uds_path))

    return op


# -- the tractor_reg client -------------------------------------------------------------


def lookup_op(portal: tractor_reg.Portal | tractor_reg.LocalPortal) -> Op:
    async def op() -> object:
        found = await portal.run_from_ns("self", "find_actor", name=TARGET_NAME)
        if not found:
            raise BenchError(f"registrar lookup of {TARGET_NAME!r} found nothing")
        return found

    return op


def find_op(reg: tractor_reg.Address, transport: str) -> Op:
    async def op() -> object:
        async with tractor_reg.find_actor(
            TARGET_NAME, registry_addrs=[reg], enable_transports=[transport]
        ) as portal:
            if portal is None:
                raise BenchError(f"find_actor({TARGET_NAME!r}) found nothing")
        return portal

    return op


# -- child processes --------------------------------------------------------------------


class Child:
    """A process started by the benchmark, in its own process group."""

    def __init__(self, label: str, proc: trio.Process, log_path: Path, log_file: TextIO) -> None:
        self.label = label
        self.proc = proc
        self.log_path = log_path
        self._log_file = log_file
        self._buf = b""

    def stderr_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no stderr captured)"
        return "\n".join(text.splitlines()[-lines:]) or "(stderr empty)"

    async def read_line(self) -> str:
        assert self.proc.stdout is not None
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise BenchError(
                    f"{self.label} exited (code {self.proc.poll()}) before answering; "
                    f"stderr tail:\n{self.stderr_tail()}"
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace")

    async def expect(self, word: str, deadline: float, what: str) -> list[str]:
        """Read lines until one starts with ``word``; its remaining words."""
        with trio.move_on_after(deadline) as scope:
            while True:
                words = (await self.read_line()).split()
                if words and words[0] == word:
                    return words[1:]
        assert scope.cancelled_caught
        raise BenchError(
            f"{self.label}: no {word!r} line within {deadline}s while waiting for {what}; "
            f"stderr tail:\n{self.stderr_tail()}"
        )

    async def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(line.encode() + b"\n")

    async def stop(self, grace: float = 3.0) -> None:
        """EOF on stdin (clean exit), then SIGINT, then SIGKILL to the whole group."""
        with trio.CancelScope(shield=True):
            if self.proc.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.proc.stdin.aclose()
            for sig in (None, signal.SIGINT, signal.SIGKILL):
                if sig is not None and self.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.proc.pid, sig)
                with trio.move_on_after(grace if sig != signal.SIGKILL else 10.0):
                    await self.proc.wait()
                if self.proc.returncode is not None:
                    break
            _LIVE_GROUPS.discard(self.proc.pid)
            self._log_file.close()


class Cluster:
    """The processes of one benchmark run and the scratch directory they use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.children: list[Child] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRACTOR_REG_")}
        self.env["XDG_RUNTIME_DIR"] = str(tmp / "run")
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )

    async def start(self, label: str, role: str, *args: str) -> Child:
        """``python -m bench._roles ROLE ARGS...`` as a child of this run."""
        return await self.start_argv(label, [sys.executable, "-m", "bench._roles", role, *args])

    async def start_argv(self, label: str, argv: list[str]) -> Child:
        """Any program as a child of this run (own process group, stderr to a log)."""
        log_path = self.tmp / f"{label}.stderr"
        log_file = log_path.open("w")
        try:
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,
                cwd=str(ROOT),
                env=self.env,
            )
        except BaseException:
            log_file.close()
            raise
        _LIVE_GROUPS.add(proc.pid)
        child = Child(label, proc, log_path, log_file)
        self.children.append(child)
        return child

    async def stop_all(self) -> None:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                # Clients and the target first, so they unregister while the registrar lives.
                for child in reversed(self.children):
                    if child.label != "registrar":
                        nursery.start_soon(child.stop)
            for child in self.children:
                if child.label == "registrar":
                    await child.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tr-"))
    (path / "run").mkdir(mode=0o700)
    old = os.environ.get("XDG_RUNTIME_DIR")
    # This process's own actor binds its UDS socket in the runtime dir too: keep it here.
    os.environ["XDG_RUNTIME_DIR"] = str(path / "run")
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = old
        shutil.rmtree(path, ignore_errors=True)


# -- the run ----------------------------------------------------------------------------


@dataclass
class Config:
    n: int
    reps: int
    warmup: int
    n_find: int
    per_task: int
    procs: bool
    quick: bool


@dataclass
class Env:
    echo_tcp: int
    echo_uds: str
    reg_tcp: tractor_reg.TCPAddress
    reg_uds: tractor_reg.UDSAddress

    def reg(self, transport: str) -> tractor_reg.Address:
        return self.reg_tcp if transport == "tcp" else self.reg_uds


@contextlib.asynccontextmanager
async def echo_conns(env: Env, transport: str, count: int) -> AsyncIterator[list[FrameStream]]:
    streams: list[trio.abc.Stream] = []
    try:
        for _ in range(count):
            streams.append(await open_raw(transport, env.echo_tcp, env.echo_uds))
        yield [FrameStream(s) for s in streams]
    finally:
        with trio.CancelScope(shield=True):
            for stream in streams:
                await stream.aclose()


async def run_clients_round(
    clients: list[Child],
    transport: str,
    per_client: int,
    warmup: int,
    on_start: Callable[[], None] = _nothing,
    registrar: tuple[int, str] | None = None,
) -> tuple[float, list[float]]:
    """Every client process warms up, then all start their timed lookups at one instant.

    ``registrar`` (TCP port, UDS path) points the clients at a registrar other than the
    one they joined.
    """
    start_at = time.perf_counter() + 0.2 + 0.02 * len(clients)
    target = "" if registrar is None else f" {registrar[0]} {registrar[1]}"
    for client in clients:
        await client.send_line(f"GO {transport} {per_client} {warmup} {start_at!r}{target}")
    # A schedule, not a wait for state: the clients start at start_at by themselves.
    await trio.sleep(max(0.0, start_at - time.perf_counter()))
    on_start()
    results: list[dict[str, Any]] = []
    for client in clients:
        words = await client.expect("RESULT", 120.0, f"{transport} lookups")
        results.append(json.loads(" ".join(words)))
    t0 = min(r["t0"] for r in results)
    t1 = max(r["t1"] for r in results)
    lat = [us / 1e6 for r in results for us in r["lat_us"]]
    return len(lat) / (t1 - t0), lat


async def measure(cfg: Config, cluster: Cluster, progress: Callable[[str], None]) -> dict[str, Row]:
    tmp = cluster.tmp
    echo_uds = str(tmp / "echo.sock")
    reg_uds = tractor_reg.UDSAddress(str(tmp), "registrar.sock")
    reg_tcp = tractor_reg.TCPAddress("127.0.0.1", free_port())
    uds_arg = ["--uds", reg_uds.path]

    progress("starting echo server, registrar and target processes")
    echo = await cluster.start("echo", "echo", "--uds", echo_uds)
    reg_args = ["--tcp-port", str(reg_tcp.port), *uds_arg]
    registrar = await cluster.start("registrar", "registrar", *reg_args)
    echo_port = int((await echo.expect("READY", READY_DEADLINE, "the echo server"))[0])
    await registrar.expect("READY", READY_DEADLINE, "the registrar")
    target = await cluster.start("target", "target", *reg_args)
    await target.expect("READY", READY_DEADLINE, "the target actor to register")
    clients: list[Child] = []
    if cfg.procs:
        progress(f"starting {CONCURRENCY} client processes")
        for i in range(CONCURRENCY):
            clients.append(await cluster.start(f"client{i}", "client", *reg_args))
        for client in clients:
            await client.expect("READY", READY_DEADLINE * 2, "a client process to join")
    env = Env(echo_port, echo_uds, reg_tcp, reg_uds)

    rows: dict[str, Row] = {}
    me: list[int | str] = ["self"]
    echo_srv, reg_srv = [echo.proc.pid], [registrar.proc.pid]
    find_srv = [registrar.proc.pid, target.proc.pid]

    async def sample(
        key: str,
        transport: str,
        n: int,
        run: Callable[..., Awaitable[tuple[float, list[float]]]],
        client: list[int | str],
        server: list[int],
    ) -> None:
        meter = CpuMeter(client, server)
        rate, lat = await run(on_start=meter.start)
        row = rows.setdefault(f"{key}.{transport}", Row(key, transport, n))
        row.add(rate, lat, len(lat), meter.stop())

    w, n, nf, pt = cfg.warmup, cfg.n, cfg.n_find, cfg.per_task
    wf, wc = max(5, cfg.warmup // 4), max(2, cfg.warmup // 16)
    client_pids: list[int | str] = [c.proc.pid for c in clients]
    async with (
        tractor_reg.open_root_actor(
            name="bench-client",
            registry_addrs=[reg_tcp, reg_uds],
            enable_transports=["tcp", "uds"],
        ),
        tractor_reg.get_registry(reg_tcp) as portal_tcp,
        tractor_reg.get_registry(reg_uds) as portal_uds,
        echo_conns(env, "tcp", 1) as echo_tcp1,
        echo_conns(env, "uds", 1) as echo_uds1,
        echo_conns(env, "tcp", CONCURRENCY) as echo_tcp16,
        echo_conns(env, "uds", CONCURRENCY) as echo_uds16,
    ):
        portals = {"tcp": portal_tcp, "uds": portal_uds}
        echo1 = {"tcp": echo_tcp1[0], "uds": echo_uds1[0]}
        echo16 = {"tcp": echo_tcp16, "uds": echo_uds16}
        for rep in range(cfg.reps):
            progress(f"repetition {rep + 1}/{cfg.reps}")
            for tr in TRANSPORTS:
                portal = portals[tr]
                echo_f = echo_op(echo1[tr])
                lookup = lookup_op(portal)
                find = find_op(env.reg(tr), tr)
                connect = connect_op(tr, env.echo_tcp, env.echo_uds)
                echo_16 = [echo_op(f) for f in echo16[tr]]
                conc = pt * CONCURRENCY
                p = functools.partial
                await sample("echo", tr, n, p(timed, echo_f, n, w), me, echo_srv)
                await sample("lookup", tr, n, p(timed, lookup, n, w), me, reg_srv)
                await sample("find", tr, nf, p(timed, find, nf, wf), me, find_srv)
                await sample("connect", tr, nf, p(timed, connect, nf, wf), me, echo_srv)
                await sample("echo16", tr, conc, p(timed_concurrent, echo_16, pt, wc), me, echo_srv)
                lookups16 = [lookup] * CONCURRENCY
                await sample(
                    "lookup16t", tr, conc, p(timed_concurrent, lookups16, pt, wc), me, reg_srv
                )
                if clients:
                    procs16 = p(run_clients_round, clients, tr, pt, wc)
                    await sample("lookup16p", tr, conc, procs16, client_pids, reg_srv)
    return rows


# -- report -----------------------------------------------------------------------------


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"


def ratio_of(rows: dict[str, Row], key: str, base: str, transport: str) -> dict[str, Any] | None:
    a, b = rows.get(f"{key}.{transport}"), rows.get(f"{base}.{transport}")
    if a is None or b is None or not a.rates or not b.rates:
        return None
    paired = [x / y for x, y in zip(a.rates, b.rates, strict=False)]
    return {
        "measured": key,
        "baseline": base,
        "transport": transport,
        "ratio": statistics.median(paired),
        "ratio_min": min(paired),
        "ratio_max": max(paired),
        "ratio_of_medians": statistics.median(a.rates) / statistics.median(b.rates),
    }


def floor_ratio(rows: dict[str, Row], transport: str) -> dict[str, Any] | None:
    """What a zero-overhead find_actor would score: one bare round trip (the lookup) plus
    one bare connect + round trip (the handshake) + close, as a ratio to the echo."""
    echo, connect = rows.get(f"echo.{transport}"), rows.get(f"connect.{transport}")
    if echo is None or connect is None or not echo.rates or not connect.rates:
        return None
    paired = [c / (e + c) for e, c in zip(echo.rates, connect.rates, strict=False)]
    return {
        "measured": "floor",
        "baseline": "echo",
        "transport": transport,
        "ratio": statistics.median(paired),
        "ratio_min": min(paired),
        "ratio_max": max(paired),
    }


def report(rows: dict[str, Row], cfg: Config, out: Callable[[str], None]) -> dict[str, Any]:
    header = (
        f"{'benchmark':<38} {'tr':<3} {'ops/rep':>7} {'ops/s':>8} {'min-max':>15} "
        f"{'p50 us':>7} {'p99 us':>7} {'cpu us/op: client':>17} {'server':>6}"
    )
    out("")
    out(header)
    out("-" * len(header))
    summaries: dict[str, Any] = {}
    for transport in TRANSPORTS:
        for key in ROW_ORDER:
            r = rows.get(f"{key}.{transport}")
            if r is None:
                continue
            s = r.summary()
            summaries[f"{key}.{transport}"] = s
            span = f"{_fmt_rate(s['ops_per_s_min'])}-{_fmt_rate(s['ops_per_s_max'])}"
            out(
                f"{s['name']:<38} {transport:<3} {r.n:>7} {_fmt_rate(s['ops_per_s_median']):>8} "
                f"{span:>15} {_fmt_us(s['p50_us']):>7} {_fmt_us(s['p99_us']):>7} "
                f"{_fmt_us(s['cpu_client_us_per_op']):>17} {_fmt_us(s['cpu_server_us_per_op']):>6}"
            )
        out("")
    out("Ratios (median of per-repetition ratios, min-max in brackets):")
    checks: list[dict[str, Any]] = []
    for transport in TRANSPORTS:
        for key, base, minimum in TARGETS:
            rr = ratio_of(rows, key, base, transport)
            if rr is None:
                continue
            rr["target"] = minimum
            rr["pass"] = rr["ratio"] >= minimum
            checks.append(rr)
            verdict = "PASS" if rr["pass"] else "FAIL"
            out(
                f"  {transport} {key + ' / ' + base:<20} {rr['ratio']:6.3f} "
                f"[{rr['ratio_min']:.3f}-{rr['ratio_max']:.3f}]  target >= {minimum:.2f}  {verdict}"
            )
        floor = floor_ratio(rows, transport)
        if floor is not None:
            checks.append(floor)
            out(
                f"  {transport} {'floor / echo':<20} {floor['ratio']:6.3f} "
                f"[{floor['ratio_min']:.3f}-{floor['ratio_max']:.3f}]  (information: bare trio "
                "echo rt + connect+rt+close, the least a find_actor can cost)"
            )
        for key, base in INFO_RATIOS:
            rr = ratio_of(rows, key, base, transport)
            if rr is None:
                continue
            checks.append(rr)
            out(
                f"  {transport} {key + ' / ' + base:<20} {rr['ratio']:6.3f} "
                f"[{rr['ratio_min']:.3f}-{rr['ratio_max']:.3f}]  (information)"
            )
    failed = [c for c in checks if c.get("pass") is False]
    out("")
    missed = ", ".join(f"{c['transport']} {c['measured']}/{c['baseline']}" for c in failed)
    out("targets: all PASS" if not failed else f"targets: FAIL {missed}")
    return {
        "config": cfg.__dict__,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "trio": trio.__version__,
            "tractor_reg": tractor_reg.__version__,
        },
        "rows": summaries,
        "ratios": checks,
        "all_targets_pass": not failed,
    }


# -- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="tractor_reg discovery benchmark: lookups and find_actor vs a bare trio echo.",
    )
    parser.add_argument("--quick", action="store_true", help="short run (well under 30 s)")
    parser.add_argument("--n", type=int, default=None, help="sequential ops per repetition")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (median reported)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write results as JSON")
    parser.add_argument(
        "--no-procs", action="store_true", help=f"skip the {CONCURRENCY} client processes figure"
    )
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    n = args.n if args.n is not None else (1000 if args.quick else 5000)
    n = max(20, n)
    reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    return Config(
        n=n,
        reps=max(1, reps),
        warmup=max(20, n // 10),
        n_find=max(10, n // 4),
        per_task=max(10, n // 8),
        procs=not args.no_procs,
        quick=bool(args.quick),
    )


def _kill_leftovers() -> None:
    for pid in list(_LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        _LIVE_GROUPS.discard(pid)


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_interrupt(e) for e in exc.exceptions)
    return False


T = TypeVar("T")


def run_isolated(run: Callable[[Path], Awaitable[T]], what: str) -> tuple[int, T | None]:
    """``trio.run(run, scratch_dir)``, then kill every process group it started.

    Returns ``(0, value)``; ``(130, None)`` after Ctrl-C; ``(1, None)`` when the run
    failed (the traceback is printed: the benchmark itself could not run).
    """
    try:
        with scratch_dir() as tmp:
            try:
                return 0, trio.run(run, tmp)
            finally:
                _kill_leftovers()
    except Exception as exc:  # noqa: BLE001 - reported: the benchmark could not run
        traceback.print_exc()
        print(f"{what} could not run: {exc}", file=sys.stderr)
        return 1, None
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        if not _is_interrupt(exc):
            raise
        print("interrupted; every process started was stopped", file=sys.stderr)
        return 130, None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 whatever the ratios (PASS/FAIL is printed), 1 if it could not run."""
    args = parse_args(argv)
    cfg = make_config(args)

    def progress(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    print(
        f"tractor_reg discovery benchmark: n={cfg.n} (find_actor/connect {cfg.n_find}, "
        f"{CONCURRENCY}x{cfg.per_task} concurrent), {cfg.reps} repetitions, warm-up {cfg.warmup}; "
        f"python {platform.python_version()}, {os.cpu_count()} cpus",
        flush=True,
    )

    async def run(tmp: Path) -> dict[str, Row]:
        cluster = Cluster(tmp)
        try:
            return await measure(cfg, cluster, progress)
        finally:
            progress("stopping processes")
            await cluster.stop_all()

    code, rows = run_isolated(run, "benchmark")
    if rows is None:
        return code
    result = report(rows, cfg, print)
    result["elapsed_s"] = time.perf_counter() - started
    print(f"(run took {result['elapsed_s']:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0
