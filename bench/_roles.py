"""The processes ``python -m bench`` starts: ``python -m bench._roles ROLE [options]``.

Roles:

``echo``
    The baseline server: a bare trio server on TCP (``127.0.0.1``, a free port) and on a
    Unix socket that reads one length-prefixed msgpack frame, decodes it with msgspec,
    encodes it again and writes it back. Prints ``READY <tcp-port>``.
``registrar``
    ``open_root_actor`` that must become the registrar (``ensure_registry=True``) at the
    given TCP port and UDS path (TCP only when ``--uds`` is not given), with the table in
    ``--backend URL`` (default ``memory://``). Prints ``READY <tcp-port>`` once the
    backend is open.
``target``
    An actor called ``target`` that joins that registrar on both transports (so it is
    registered with a TCP and a UDS address). Prints ``READY``.
``client``
    An actor that joins the registrar and runs lookup loops on command, for the
    "16 client processes" figure. It reads lines from stdin:
    ``GO <tcp|uds> <n> <warmup> <start_at>`` runs ``warmup`` lookups, waits until
    ``time.perf_counter() >= start_at`` (CLOCK_MONOTONIC, shared by all processes on
    Linux), runs ``n`` timed lookups over one reused registry portal and prints
    ``RESULT {"t0":..,"t1":..,"lat_us":[..]}``. ``EXIT`` (or EOF) ends it.
    ``GO <tcp|uds> <n> <warmup> <start_at> <reg-tcp-port> <reg-uds-path>`` does the same
    against another registrar. With ``--own-port P`` the client is its own registrar
    at ``127.0.0.1:P`` instead of joining one (so it is registered at no measured
    registrar); it then needs the long form of ``GO``.
``populate``
    Fills stores before any registrar opens them, through the backend API:
    ``--store URL=N`` (repeatable) opens ``URL`` with ``opened_backend`` and registers
    ``N`` entries :func:`scale_uid` / :func:`scale_addr` ``(0..N-1)`` with concurrent
    ``register()`` calls in chunks (durable backends commit each chunk as a few
    batches). ``N`` may be 0 (an empty, initialised store). Prints
    ``READY <seconds>`` when every store is filled and closed.
``pyro-ns``
    Pyro5's name server (``Pyro5.nameserver.start_ns``, what ``python -m
    Pyro5.nameserver -n 127.0.0.1 -p PORT -x [-s sql:PATH]`` runs) on ``127.0.0.1`` at
    ``--tcp-port``, in-memory or with ``--storage sql:PATH``. Prints ``READY <port>``;
    exits when stdin reaches EOF.

The registrar role takes ``--prepopulate N``: before printing ``READY`` it registers
``N`` :func:`scale_uid` entries straight into its own backend (in-process, no IPC): how
the benchmark fills a ``memory://`` registry, which has no store to fill beforehand.
Every role raises its soft ``RLIMIT_NOFILE`` to the hard limit (registration storms
hold one connection per registering client).

Every role exits cleanly (unregistering and unlinking its socket files) when its stdin
reaches EOF, so a benchmark that dies cannot leave servers behind, and on SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import os
import resource
import struct
import sys
import threading
import time
from typing import Any

import msgspec
import trio

import tractor_reg

HEADER = struct.Struct(">I")
RECV_CHUNK = 65536
#: Lease of the entries the benchmark writes itself (long enough never to expire in a run).
SCALE_TTL = 3600.0
#: Concurrent ``register()`` calls per chunk when filling a store.
POPULATE_CHUNK = 10_000
#: Connections a benchmark registrar accepts (the default caps them lower than a storm).
MAX_CONNECTIONS = 65536


def scale_uid(i: int) -> tuple[str, str]:
    """The ``i``-th entry the benchmark fills a registry with: one name per entry."""
    return (f"scale-{i:06d}", f"{i:08x}-5ca1-4e00-8000-bench0000000")


def scale_addr(i: int) -> tuple[str, int]:
    """A distinct loopback TCP address per entry (never dialled: nothing listens there)."""
    return (f"127.0.{i // 60000 + 1}.1", 1024 + i % 60000)


def raise_nofile() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; (soft, hard) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


def _supported(func: Any, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments ``func`` accepts (options newer than some checkouts)."""
    params = inspect.signature(func).parameters
    return {k: v for k, v in kwargs.items() if k in params}


class FrameStream:
    """Length-prefixed msgpack frames over a trio stream (the baseline's whole protocol)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder()

    async def send(self, obj: Any) -> None:
        payload = self._enc.encode(obj)
        await self.stream.send_all(HEADER.pack(len(payload)) + payload)

    async def _fill(self, need: int) -> bool:
        while len(self._buf) < need:
            chunk = await self.stream.receive_some(RECV_CHUNK)
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def recv(self) -> Any:
        """The next decoded frame; raises EOFError when the peer closed."""
        if not await self._fill(HEADER.size):
            raise EOFError
        (length,) = HEADER.unpack_from(self._buf)
        if not await self._fill(HEADER.size + length):
            raise EOFError
        payload = bytes(self._buf[HEADER.size : HEADER.size + length])
        del self._buf[: HEADER.size + length]
        return self._dec.decode(payload)


def ready(*parts: object) -> None:
    print("READY", *parts, flush=True)


async def until_stdin_eof() -> None:
    """Return when the parent closes our stdin (or dies)."""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some(4096):
            pass


# -- echo -------------------------------------------------------------------------------


async def _echo_handler(stream: trio.abc.Stream) -> None:
    frames = FrameStream(stream)
    try:
        while True:
            try:
                msg = await frames.recv()
            except EOFError:
                return
            await frames.send(msg)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await stream.aclose()


async def _unix_listener(path: str) -> trio.SocketListener:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(128)
    return trio.SocketListener(sock)


async def run_echo(tcp_port: int, uds_path: str) -> None:
    tcp = (await trio.open_tcp_listeners(tcp_port, host="127.0.0.1"))[0]
    uds = await _unix_listener(uds_path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, _echo_handler, [tcp, uds])
            ready(tcp.socket.getsockname()[1])
            await until_stdin_eof()
            nursery.cancel_scope.cancel()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(uds_path)


# -- actors -----------------------------------------------------------------------------


def _reg_addrs(tcp_port: int, uds_path: str) -> list[tractor_reg.Address]:
    directory, filename = os.path.split(uds_path)
    return [
        tractor_reg.TCPAddress("127.0.0.1", tcp_port),
        tractor_reg.UDSAddress(directory, filename),
    ]


async def prepopulate(actor: Any, count: int) -> None:
    """Register ``count`` scale entries straight into the registrar's own backend."""
    backend = actor.backend
    registrar = f"bench-prepopulate-{os.getpid()}"
    for i in range(count):
        await backend.register(scale_uid(i), [scale_addr(i)], SCALE_TTL, registrar=registrar)


async def run_registrar(
    tcp_port: int, uds_path: str | None, backend: str, prepopulate_count: int = 0
) -> None:
    if uds_path is None:
        addrs: list[tractor_reg.Address] = [tractor_reg.TCPAddress("127.0.0.1", tcp_port)]
        transports = ["tcp"]
    else:
        addrs, transports = _reg_addrs(tcp_port, uds_path), ["tcp", "uds"]
    extra = _supported(tractor_reg.open_root_actor, max_connections=MAX_CONNECTIONS)
    async with tractor_reg.open_root_actor(
        name="registrar",
        registry_addrs=addrs,
        enable_transports=transports,
        ensure_registry=True,
        registry_backend=backend,
        **extra,
    ) as actor:
        if not actor.is_registrar:
            raise SystemExit("registrar role did not become the registrar")
        if prepopulate_count:
            await prepopulate(actor, prepopulate_count)
        ready(tcp_port)
        await until_stdin_eof()


async def run_target(tcp_port: int, uds_path: str, name: str) -> None:
    async with tractor_reg.open_root_actor(
        name=name,
        registry_addrs=_reg_addrs(tcp_port, uds_path),
        enable_transports=["tcp", "uds"],
    ):
        ready()
        await until_stdin_eof()


async def _lookup_loop(
    addr: tractor_reg.Address, name: str, n: int, warmup: int, start_at: float
) -> dict[str, Any]:
    async with tractor_reg.get_registry(addr) as portal:
        for _ in range(warmup):
            await portal.run_from_ns("self", "find_actor", name=name)
        # Translate the shared perf_counter deadline into trio's clock (it has an offset).
        await trio.sleep(max(0.0, start_at - time.perf_counter()))
        pc = time.perf_counter
        lat: list[int] = []
        t0 = pc()
        for _ in range(n):
            s = pc()
            found = await portal.run_from_ns("self", "find_actor", name=name)
            lat.append(round((pc() - s) * 1e6))
            if not found:
                raise RuntimeError(f"lookup of {name!r} found nothing")
        t1 = pc()
    return {"t0": t0, "t1": t1, "lat_us": lat}


async def run_client(tcp_port: int, uds_path: str | None, name: str, own_port: int) -> None:
    if own_port:
        own: list[tractor_reg.Address] = [tractor_reg.TCPAddress("127.0.0.1", own_port)]
        root = tractor_reg.open_root_actor(
            name="bench-client",
            registry_addrs=own,
            enable_transports=["tcp", "uds"],
            ensure_registry=True,
        )
    else:
        assert uds_path is not None
        root = tractor_reg.open_root_actor(
            name="bench-client",
            registry_addrs=_reg_addrs(tcp_port, uds_path),
            enable_transports=["tcp", "uds"],
        )
    async with (
        root,
        trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin,
    ):
        ready()
        buf = b""
        while True:
            while b"\n" not in buf:
                chunk = await stdin.receive_some(4096)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            words = line.decode().split()
            if not words or words[0] == "EXIT":
                return
            if words[0] != "GO" or len(words) not in (5, 7):
                raise SystemExit(f"client: bad command {line!r}")
            if len(words) == 7:
                tcp_addr, uds_addr = _reg_addrs(int(words[5]), words[6])
            elif uds_path is not None:
                tcp_addr, uds_addr = _reg_addrs(tcp_port, uds_path)
            else:
                raise SystemExit(f"client: {line!r} names no registrar")
            addr = tcp_addr if words[1] == "tcp" else uds_addr
            result = await _lookup_loop(addr, name, int(words[2]), int(words[3]), float(words[4]))
            print("RESULT", json.dumps(result), flush=True)


# -- populate ---------------------------------------------------------------------------


async def _fill(url: str, count: int, chunk: int) -> None:
    from tractor_reg.backends import opened_backend

    async with opened_backend(url) as backend:
        registrar = f"bench-populate-{os.getpid()}"
        for start in range(0, count, chunk):
            async with trio.open_nursery() as nursery:
                for i in range(start, min(count, start + chunk)):
                    nursery.start_soon(
                        functools.partial(
                            backend.register,
                            scale_uid(i),
                            [scale_addr(i)],
                            SCALE_TTL,
                            registrar=registrar,
                        )
                    )
        found = await backend.count()
        if found < count:
            raise SystemExit(f"populate: {url} holds {found} entries, expected {count}")


async def run_populate(stores: list[str], chunk: int) -> None:
    started = time.perf_counter()
    for spec in stores:
        url, sep, count = spec.rpartition("=")
        if not sep or not count.isdigit():
            raise SystemExit(f"populate: --store wants URL=COUNT, got {spec!r}")
        await _fill(url, int(count), chunk)
    ready(f"{time.perf_counter() - started:.3f}")


# -- Pyro5 name server --------------------------------------------------------------------


def run_pyro_ns(tcp_port: int, storage: str | None) -> None:
    import importlib

    ns_mod: Any = importlib.import_module("Pyro5.nameserver")
    _uri, daemon, _bc = ns_mod.start_ns(
        host="127.0.0.1", port=tcp_port, enableBroadcast=False, storage=storage
    )
    stop = threading.Event()
    loop = threading.Thread(
        target=daemon.requestLoop, kwargs={"loopCondition": lambda: not stop.is_set()}
    )
    loop.start()
    try:
        ready(daemon.locationStr.rpartition(":")[2])
        while os.read(sys.stdin.fileno(), 4096):
            pass
    finally:
        stop.set()
        daemon.shutdown()
        loop.join(timeout=5)
        daemon.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._roles")
    parser.add_argument(
        "role", choices=["echo", "registrar", "target", "client", "populate", "pyro-ns"]
    )
    parser.add_argument("--tcp-port", type=int, default=0)
    parser.add_argument(
        "--uds", default=None, help="UDS socket path (required except for the registrar)"
    )
    parser.add_argument("--name", default="target", help="target name (target, client)")
    parser.add_argument(
        "--backend", default="memory://", help="registry backend URL (registrar only)"
    )
    parser.add_argument(
        "--prepopulate", type=int, default=0, help="registrar: register N scale entries first"
    )
    parser.add_argument(
        "--own-port", type=int, default=0, help="client: be its own registrar at this port"
    )
    parser.add_argument(
        "--store", action="append", default=[], help="populate: URL=COUNT (repeatable)"
    )
    parser.add_argument("--chunk", type=int, default=POPULATE_CHUNK, help="populate: chunk")
    parser.add_argument("--storage", default=None, help="pyro-ns: sql:PATH (default memory)")
    args = parser.parse_args(argv)
    needs_uds = args.role in ("echo", "target") or (args.role == "client" and not args.own_port)
    if args.uds is None and needs_uds:
        parser.error(f"--uds is required for the {args.role} role")
    raise_nofile()
    try:
        if args.role == "echo":
            trio.run(run_echo, args.tcp_port, args.uds)
        elif args.role == "registrar":
            trio.run(run_registrar, args.tcp_port, args.uds, args.backend, args.prepopulate)
        elif args.role == "target":
            trio.run(run_target, args.tcp_port, args.uds, args.name)
        elif args.role == "client":
            trio.run(run_client, args.tcp_port, args.uds, args.name, args.own_port)
        elif args.role == "populate":
            trio.run(run_populate, args.store, max(1, args.chunk))
        else:
            run_pyro_ns(args.tcp_port, args.storage)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
