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

Every role exits cleanly (unregistering and unlinking its socket files) when its stdin
reaches EOF, so a benchmark that dies cannot leave servers behind, and on SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import struct
import sys
import time
from typing import Any

import msgspec
import trio

import tractor_reg

HEADER = struct.Struct(">I")
RECV_CHUNK = 65536


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


async def run_registrar(tcp_port: int, uds_path: str | None, backend: str) -> None:
    if uds_path is None:
        addrs: list[tractor_reg.Address] = [tractor_reg.TCPAddress("127.0.0.1", tcp_port)]
        transports = ["tcp"]
    else:
        addrs, transports = _reg_addrs(tcp_port, uds_path), ["tcp", "uds"]
    async with tractor_reg.open_root_actor(
        name="registrar",
        registry_addrs=addrs,
        enable_transports=transports,
        ensure_registry=True,
        registry_backend=backend,
    ) as actor:
        if not actor.is_registrar:
            raise SystemExit("registrar role did not become the registrar")
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


async def run_client(tcp_port: int, uds_path: str, name: str) -> None:
    tcp_addr, uds_addr = _reg_addrs(tcp_port, uds_path)
    async with (
        tractor_reg.open_root_actor(
            name="bench-client",
            registry_addrs=[tcp_addr, uds_addr],
            enable_transports=["tcp", "uds"],
        ),
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
            if words[0] != "GO" or len(words) != 5:
                raise SystemExit(f"client: bad command {line!r}")
            addr = tcp_addr if words[1] == "tcp" else uds_addr
            result = await _lookup_loop(addr, name, int(words[2]), int(words[3]), float(words[4]))
            print("RESULT", json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._roles")
    parser.add_argument("role", choices=["echo", "registrar", "target", "client"])
    parser.add_argument("--tcp-port", type=int, default=0)
    parser.add_argument(
        "--uds", default=None, help="UDS socket path (required except for the registrar)"
    )
    parser.add_argument("--name", default="target", help="target name (target, client)")
    parser.add_argument(
        "--backend", default="memory://", help="registry backend URL (registrar only)"
    )
    args = parser.parse_args(argv)
    if args.uds is None and args.role != "registrar":
        parser.error(f"--uds is required for the {args.role} role")
    try:
        if args.role == "echo":
            trio.run(run_echo, args.tcp_port, args.uds)
        elif args.role == "registrar":
            trio.run(run_registrar, args.tcp_port, args.uds, args.backend)
        elif args.role == "target":
            trio.run(run_target, args.tcp_port, args.uds, args.name)
        else:
            trio.run(run_client, args.tcp_port, args.uds, args.name)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
