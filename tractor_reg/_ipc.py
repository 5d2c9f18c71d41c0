"""Channels: length-prefixed msgpack frames over a trio stream, plus RPC bookkeeping.

A frame is a 4-byte big-endian payload length followed by the msgpack payload of one
:data:`~tractor_reg._msg.Msg`. A channel is symmetric: both ends may send calls, and the
actor's message loop feeds answers back to :meth:`Channel.deliver`.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from ._addr import Address, TCPAddress, UDSAddress, check_uds_path, wrap_address
from ._exceptions import (
    AuthenticationError,
    FrameTooLarge,
    HandshakeError,
    ProtocolError,
    RemoteActorError,
    TransportClosed,
)
from ._msg import (
    PROTOCOL_VERSION,
    Auth,
    Call,
    CancelCall,
    Error,
    Handshake,
    Msg,
    Return,
    decode,
    encode,
)
from ._security import NONCE_SIZE, check_proof, proof

log = logging.getLogger("tractor_reg.ipc")

#: Default maximum payload size of one frame (bytes).
DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
#: Default deadline for the identity handshake on a new connection (seconds).
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: Default deadline for establishing a connection (seconds).
DEFAULT_CONNECT_TIMEOUT = 5.0

_HEADER = struct.Struct(">I")
_RECV_CHUNK = 65536


class Aid(msgspec.Struct, frozen=True):
    """A peer actor's identity as learnt from its handshake."""

    name: str
    uuid: str
    pid: int
    is_registrar: bool
    accept_addrs: tuple[Address, ...] = ()
    role: str = "peer"

    @property
    def uid(self) -> tuple[str, str]:
        return (self.name, self.uuid)


class _PendingCall:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Channel:
    """One connection to a peer actor.

    ``aid`` is set once the handshake completed. ``raddr`` is the address this side dialled
    (``None`` for accepted connections).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        raddr: Address | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.stream = stream
        self.raddr = raddr
        self.max_frame_size = max_frame_size
        self._aid: Aid | None = None
        self._buf = bytearray()
        self._send_lock = trio.StrictFIFOLock()
        self._next_cid = 1
        self._pending: dict[int, _PendingCall] = {}
        self._closed = False
        self.closed_event = trio.Event()
        #: Set by the actor for lazily served channels: called once, before the first call.
        self.on_first_call: Callable[[], None] | None = None

    def __repr__(self) -> str:
        aid = self._aid
        who = f"{aid.name}:{aid.uuid[:8]}" if aid is not None else "?"
        return f"<Channel {who} raddr={self.raddr}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def aid(self) -> Aid:
        """The peer's identity, as its handshake proved it.

        Every channel a portal, a discovery call or an RPC hands out has completed its
        handshake. Raises :class:`HandshakeError` on one that has not (yet).
        """
        if self._aid is None:
            raise HandshakeError(f"{self!r}: the handshake has not completed")
        return self._aid

    @property
    def handshaken(self) -> bool:
        """Whether the handshake completed (:attr:`aid` is known)."""
        return self._aid is not None

    # -- framing -------------------------------------------------------------------------

    async def send(self, msg: Msg) -> None:
        payload = encode(msg)
        frame = _HEADER.pack(len(payload)) + payload
        lock = self._send_lock
        # Frames must not interleave, but an uncontended lock need not cost a schedule
        # point (send_all has its own checkpoint).
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()
        try:
            if self._closed:
                raise TransportClosed(f"{self!r} is closed")
            try:
                await self.stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise TransportClosed(f"send on {self!r} failed: {exc}") from exc
        finally:
            lock.release()

    async def _fill(self, need: int) -> None:
        while len(self._buf) < need:
            try:
                chunk = await self.stream.receive_some(_RECV_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise TransportClosed(f"receive on {self!r} failed: {exc}") from exc
            if not chunk:
                raise TransportClosed(f"{self!r}: peer closed the connection")
            self._buf += chunk

    async def recv(self) -> Msg:
        """The next message. Raises TransportClosed at EOF, ProtocolError on a bad frame."""
        await self._fill(_HEADER.size)
        (length,) = _HEADER.unpack_from(self._buf)
        if length > self.max_frame_size:
            raise FrameTooLarge(
                f"frame of {length} bytes exceeds the maximum frame size {self.max_frame_size}"
            )
        end = _HEADER.size + length
        await self._fill(end)
        # Decode straight from the receive buffer (no copy); release the view before the
        # buffer is resized.
        view = memoryview(self._buf)[_HEADER.size : end]
        try:
            return decode(view)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as exc:
            # ValueError covers UnicodeDecodeError (invalid UTF-8 in a text field).
            raise ProtocolError(f"undecodable frame: {exc}") from exc
        finally:
            view.release()
            del self._buf[:end]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_pending(TransportClosed(f"{self!r} closed"))
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
        self.closed_event.set()

    # -- handshake -----------------------------------------------------------------------

    async def handshake(self, local: Handshake, timeout: float, secret: bytes | None = None) -> Aid:
        """Exchange identities (and prove the shared secret, when either side has one).

        The whole exchange is bounded by ``timeout`` seconds (slow peers are refused).
        Raises :class:`AuthenticationError` when the peer fails to prove the secret or
        demands one this side lacks.
        """
        with trio.move_on_after(timeout) as scope:
            await self.send(local)
            msg = await self.recv()
            aid = self._accept_hello(msg)
            if local.auth or (isinstance(msg, Handshake) and msg.auth):
                await self._authenticate(local, msg, secret, aid)  # type: ignore[arg-type]
        if scope.cancelled_caught:
            raise HandshakeError(f"handshake not completed within {timeout}s")
        self._aid = aid
        return aid

    async def _authenticate(
        self, local: Handshake, peer: Handshake, secret: bytes | None, aid: Aid
    ) -> None:
        if secret is None:
            raise AuthenticationError(
                f"{aid.name!r} requires a shared secret and this actor has none "
                "(pass secret=... or set TRACTOR_REG_SECRET_FILE)",
                peer_is_registrar=aid.is_registrar,
            )
        if not peer.auth or len(peer.nonce) < NONCE_SIZE:
            raise AuthenticationError(
                f"{aid.name!r} did not offer authentication but this actor requires it",
                peer_is_registrar=aid.is_registrar,
            )
        await self.send(Auth(mac=proof(secret, peer.nonce, local.nonce, local.uuid)))
        answer = await self.recv()
        if not isinstance(answer, Auth) or not check_proof(
            secret, answer.mac, local.nonce, peer.nonce, peer.uuid
        ):
            raise AuthenticationError(
                f"{aid.name!r} failed authentication (wrong shared secret)",
                peer_is_registrar=aid.is_registrar,
            )

    def _accept_hello(self, msg: Msg) -> Aid:
        if not isinstance(msg, Handshake):
            raise HandshakeError(f"expected a handshake, got a {type(msg).__name__} frame")
        if msg.version != PROTOCOL_VERSION:
            raise HandshakeError(
                f"peer speaks protocol version {msg.version}, this actor {PROTOCOL_VERSION}"
            )
        try:
            addrs = tuple(wrap_address(a) for a in msg.accept_addrs)
        except ValueError as exc:
            raise HandshakeError(f"handshake carries a bad address: {exc}") from exc
        if not msg.name or not msg.uuid:
            raise HandshakeError("handshake with an empty name or uuid")
        return Aid(msg.name, msg.uuid, msg.pid, msg.is_registrar, addrs, msg.role)

    # -- RPC client side -----------------------------------------------------------------

    async def call(self, ns: str, func: str, kwargs: dict[str, Any]) -> Any:
        """Run ``ns.func(**kwargs)`` in the peer and return its result.

        Remote failures raise :class:`RemoteActorError`; a lost connection raises
        :class:`TransportClosed`. If the caller is cancelled, the peer is told to cancel
        the call too.
        """
        if self.on_first_call is not None:
            start, self.on_first_call = self.on_first_call, None
            start()
        cid = self._next_cid
        self._next_cid += 1
        pending = _PendingCall()
        self._pending[cid] = pending
        try:
            await self.send(Call(cid=cid, ns=ns, func=func, kwargs=kwargs))
            await pending.done.wait()
        except trio.Cancelled:
            if not pending.done.is_set() and not self._closed:
                # Best effort and bounded: the remote task would otherwise run on.
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    try:
                        await self.send(CancelCall(cid=cid))
                    except TransportClosed:
                        pass
            raise
        finally:
            self._pending.pop(cid, None)
        if pending.error is not None:
            raise pending.error
        return pending.value

    def deliver(self, msg: Return | Error) -> None:
        """Hand an answer to the call waiting for it (unknown cids are ignored)."""
        pending = self._pending.get(msg.cid)
        if pending is None:
            log.debug("%r: answer for unknown call %d dropped", self, msg.cid)
            return
        if isinstance(msg, Return):
            pending.value = msg.value
        else:
            pending.error = error_from_msg(msg)
        pending.done.set()

    def _fail_pending(self, exc: BaseException) -> None:
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = exc
                pending.done.set()


def error_from_msg(msg: Error) -> RemoteActorError:
    src = (msg.src_uid[0], msg.src_uid[1]) if msg.src_uid and len(msg.src_uid) == 2 else None
    return RemoteActorError(msg.type_name, msg.message, msg.traceback, src)


async def open_stream(addr: Address, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> trio.abc.Stream:
    """Dial ``addr``. Raises ``OSError`` (e.g. ConnectionRefusedError) or ``TimeoutError``."""
    with trio.move_on_after(timeout) as scope:
        if isinstance(addr, TCPAddress) and not _is_ip_literal(addr.host):
            stream: trio.abc.Stream = await trio.open_tcp_stream(addr.host, addr.port)
            return stream
        # IP literals (what registries hand out) and UDS: one plain connect, without
        # open_tcp_stream's name resolution and happy-eyeballs task machinery.
        if isinstance(addr, TCPAddress):
            family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
            target: str | tuple[str, int] = (addr.host, addr.port)
        else:
            check_uds_path(addr)
            family, target = socket.AF_UNIX, addr.path
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        connected = False
        try:
            await sock.connect(target)
            connected = True
        finally:
            if not connected:
                sock.close()
        return trio.SocketStream(sock)
    assert scope.cancelled_caught
    raise TimeoutError(errno.ETIMEDOUT, f"connecting to {addr} timed out after {timeout}s")


@functools.lru_cache(maxsize=1024)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def open_listener(addr: Address) -> tuple[trio.SocketListener, Address]:
    """Bind and listen on ``addr``; returns the listener and the address actually bound.

    TCP port 0 binds a free port. A UDS path whose socket file is stale (nobody accepts on
    it) is replaced; a live one raises ``OSError(EADDRINUSE)``.
    """
    if isinstance(addr, TCPAddress):
        listeners = await trio.open_tcp_listeners(addr.port, host=addr.host)
        listener = listeners[0]
        for extra in listeners[1:]:
            await extra.aclose()
        sockname = listener.socket.getsockname()
        return listener, TCPAddress(addr.host, int(sockname[1]))
    assert isinstance(addr, UDSAddress)
    check_uds_path(addr)
    os.makedirs(addr.directory, mode=0o700, exist_ok=True)
    if os.path.exists(addr.path):  # noqa: ASYNC240 - one stat at bind time
        if await _uds_alive(addr):
            raise OSError(errno.EADDRINUSE, f"UDS socket {addr.path} is in use")
        os.unlink(addr.path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    bound = False
    try:
        await sock.bind(addr.path)
        os.chmod(addr.path, 0o600)
        sock.listen(128)
        bound = True
    finally:
        if not bound:
            sock.close()
    return trio.SocketListener(sock), addr


async def _uds_alive(addr: UDSAddress) -> bool:
    try:
        stream = await open_stream(addr, timeout=1.0)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True
