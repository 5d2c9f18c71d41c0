"""Helpers for speaking the wire protocol by hand in tests (well-behaved or hostile).

A :class:`RawPeer` is a bare :class:`~tractor_reg._ipc.Channel` over a raw stream: it does
exactly what a test tells it to, one frame at a time, so tests can break the protocol on
purpose. :func:`fake_actor` serves a listening address that answers the handshake with a
chosen identity, standing in for a live actor when the registrar probes an address.
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

import tractor_reg
from tractor_reg._ipc import Channel
from tractor_reg._msg import Call, Error, Handshake, Msg, Return

HEADER = struct.Struct(">I")


def frame(payload: bytes) -> bytes:
    """A raw frame: 4-byte big-endian length prefix + payload."""
    return HEADER.pack(len(payload)) + payload


def hello(name: str, uuid: str, accept_addrs: list[Any] | None = None, **kw: Any) -> Handshake:
    return Handshake(
        name=name,
        uuid=uuid,
        pid=os.getpid(),
        is_registrar=False,
        accept_addrs=[tuple(a) for a in accept_addrs or []],
        **kw,
    )


#: Endpoints that act on a registration and take its lease token.
TOKEN_ENDPOINTS = frozenset({"register_actor", "renew_lease", "unregister_actor"})


class RawPeer:
    """A hand-driven client connection to an actor.

    :meth:`reg` keeps the lease token each ``register_actor`` answer returns (in
    ``tokens``, by uid) and presents it, unless the call names a ``token`` itself, to
    later registry calls on that uid, as a well-behaved actor does. :meth:`call` sends
    exactly what it is given.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.chan = Channel(stream)
        self._next_cid = 100
        self.tokens: dict[tuple[str, str], bytes] = {}

    @property
    def aid(self) -> tractor_reg.Aid:
        return self.chan.aid

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, msg: Msg) -> None:
        await self.chan.send(msg)

    async def recv(self) -> Msg:
        return await self.chan.recv()

    async def recv_handshake(self) -> Handshake:
        """The actor's own hello (it sends it first, before reading ours)."""
        msg = await self.recv()
        assert isinstance(msg, Handshake), msg
        return msg

    async def handshake(
        self,
        name: str,
        uuid: str,
        accept_addrs: list[Any] | None = None,
        secret: bytes | None = None,
    ) -> tractor_reg.Aid:
        """Hello as ``(name, uuid)``; with ``secret``, prove it as an actor would."""
        auth = {} if secret is None else {"auth": True, "nonce": secrets.token_bytes(32)}
        return await self.chan.handshake(hello(name, uuid, accept_addrs, **auth), 5.0, secret)

    async def send_call(self, ns: str, func: str, **kwargs: Any) -> int:
        cid = self._next_cid
        self._next_cid += 1
        await self.send(Call(cid=cid, ns=ns, func=func, kwargs=kwargs))
        return cid

    async def call(self, ns: str, func: str, **kwargs: Any) -> Return | Error:
        """Send one Call and return the Return/Error answering it."""
        cid = await self.send_call(ns, func, **kwargs)
        while True:
            msg = await self.recv()
            if isinstance(msg, Return | Error) and msg.cid == cid:
                return msg
            if isinstance(msg, Error) and msg.cid == 0:
                raise AssertionError(f"channel error instead of an answer: {msg}")

    async def reg(self, func: str, **kwargs: Any) -> Any:
        """Call a registrar endpoint and return its value (an Error fails the test)."""
        uid = _uid_key(kwargs.get("uid"))
        if func in TOKEN_ENDPOINTS and "token" not in kwargs and uid in self.tokens:
            kwargs["token"] = self.tokens[uid]
        reply = await self.call("self", func, **kwargs)
        assert isinstance(reply, Return), reply
        if func == "register_actor" and uid is not None and isinstance(reply.value, dict):
            self.tokens[uid] = reply.value["token"]
        return reply.value

    async def expect_closed(self) -> None:
        """The actor closed this connection: EOF (no further frames)."""
        with trio.fail_after(5):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                raise AssertionError(f"expected EOF, got more data: {data[:80]!r}")

    async def aclose(self) -> None:
        await self.chan.aclose()


def _uid_key(uid: object) -> tuple[str, str] | None:
    if isinstance(uid, list | tuple) and len(uid) == 2 and all(isinstance(p, str) for p in uid):
        return (uid[0], uid[1])
    return None


@asynccontextmanager
async def raw_peer(addr: tractor_reg.Address) -> AsyncIterator[RawPeer]:
    """A raw connection to ``addr`` without any handshake."""
    if isinstance(addr, tractor_reg.TCPAddress):
        stream: trio.abc.Stream = await trio.open_tcp_stream(addr.host, addr.port)
    else:
        stream = await trio.open_unix_socket(addr.path)
    peer = RawPeer(stream)
    try:
        yield peer
    finally:
        await peer.aclose()


@asynccontextmanager
async def client(
    addr: tractor_reg.Address,
    name: str = "client",
    uuid: str | None = None,
    accept_addrs: list[Any] | None = None,
    secret: bytes | None = None,
) -> AsyncIterator[RawPeer]:
    """A well-behaved connection to ``addr``, handshaken as ``(name, uuid)``."""
    async with raw_peer(addr) as peer:
        await peer.handshake(name, uuid or f"{name}-uuid", accept_addrs, secret)
        # One round trip: once answered, the actor has surely taken our handshake in.
        reply = await peer.call("self", "ping")
        assert isinstance(reply, Return), reply
        yield peer


@asynccontextmanager
async def fake_actor(
    name: str, uuid: str, *, answer: bool = True, host: str = "127.0.0.1"
) -> AsyncIterator[tractor_reg.TCPAddress]:
    """Listen on a free TCP port and answer each connection's handshake as ``(name, uuid)``.

    With ``answer=False`` connections are accepted but never spoken to (a wedged process).
    The listener is closed when the block exits (the address then refuses connections).
    """
    listeners = await trio.open_tcp_listeners(0, host=host)
    listener = listeners[0]
    for extra in listeners[1:]:
        await extra.aclose()
    port = listener.socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        chan = Channel(stream)
        try:
            if answer:
                await chan.handshake(hello(name, uuid), 5.0)
            # Hold the connection until the prober hangs up.
            while True:
                await chan.recv()
        except tractor_reg.TractorRegError:
            pass
        finally:
            await chan.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, [listener])
        try:
            yield tractor_reg.TCPAddress(host, port)
        finally:
            nursery.cancel_scope.cancel()
