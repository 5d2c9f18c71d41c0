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
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec
import trio

from ._addr import Address, AddressLike, TCPAddress, UDSAddress, check_uds_path, wrap_address
from ._budget import InputBudget
from ._exceptions import (
    AuthenticationError,
    FrameTimeout,
    FrameTooLarge,
    HandshakeError,
    PeerRefused,
    ProtocolError,
    RemoteActorError,
    TransportClosed,
    unpack_error,
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
from ._nongoals import refuse
from ._security import NONCE_SIZE, check_proof, proof

log = logging.getLogger("tractor_reg.ipc")

#: Default maximum payload size of one frame (bytes).
DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
#: Default deadline for the identity handshake on a new connection (seconds).
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: Default deadline for establishing a connection (seconds).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Default deadline for one frame once it started: its last byte must arrive (or, when
#: sending, leave) within this many seconds of its first (seconds).
DEFAULT_FRAME_DEADLINE = 30.0

_HEADER = struct.Struct(">I")
_RECV_CHUNK = 65536
#: First and longest pause between connect attempts to a Unix socket whose accept
#: backlog is full (seconds; the pause doubles from one to the other).
_UDS_BACKLOG_RETRY = (0.001, 0.05)
#: Frames a caller reading its own answer may hand to a busy message loop before it
#: gives the socket back to that loop.
_INBOX_LIMIT = 64
#: Encoded answers the message loop may queue for a peer that does not read them before
#: the loop holds further calls back (bytes; one frame is always accepted).
_OUTBOX_LIMIT = 1024 * 1024
#: Calls one channel has in flight at once; more wait for a slot on the calling side.
#: Below the calls a reader holds back (``_actor._HELD_CALLS_MAX``): see ``call``.
MAX_PENDING_CALLS = 1024
#: Frames up to this size are read without a reservation from the actor's input budget
#: (a channel buffers at most one receive chunk beyond its current frame anyway).
_UNBUDGETED_FRAME = _RECV_CHUNK
#: How long closing a TLS channel may wait for the peer (close_notify) before the
#: transport is closed anyway.
_TLS_CLOSE_TIMEOUT = 1.0


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


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def _sockaddr_to_address(family: int, sockaddr: Any) -> Address | None:
    if family == socket.AF_UNIX:
        path = os.fsdecode(sockaddr) if sockaddr else ""
        if not path.startswith("/"):
            return None  # an unnamed (dialling) end has no path
        directory, filename = os.path.split(path)
        return UDSAddress(directory, filename)
    return TCPAddress(str(sockaddr[0]), int(sockaddr[1]))


#: ``struct ucred`` (pid, uid, gid) as ``SO_PEERCRED`` returns it on Linux.
_PEERCRED = struct.Struct("3i")


def accepted_raddr(stream: trio.abc.Stream) -> Address | None:
    """The remote address of an accepted connection, as upstream reports it.

    TCP: the dialler's socket address. UDS: a dialling Unix socket has no path, so (as in
    upstream) this is the listening socket file the connection came in on, with the
    dialler's pid (``SO_PEERCRED``) as its ``maybe_pid``.
    """
    sock = _socket_of(stream)
    if sock is None:
        return None
    try:
        if sock.family != socket.AF_UNIX:
            return _sockaddr_to_address(sock.family, sock.getpeername())
        listening = _sockaddr_to_address(sock.family, sock.getsockname())
        if not isinstance(listening, UDSAddress):
            return None
        # The kernel vouches for the dialling process (its pid at connect time).
        cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid = _PEERCRED.unpack(cred)[0]
        return UDSAddress(listening.directory, listening.filename, maybe_pid=pid or None)
    except OSError:
        return None  # the dialler is gone already


def peer_host(stream: trio.abc.Stream) -> str:
    """Which peer host a connection counts against, for per-host limits and log rate
    limits: the peer's IP address for TCP (IPv4-mapped IPv6 as IPv4), ``uid:<n>`` (the
    dialling process's user id, ``SO_PEERCRED``) for a Unix socket, ``?`` if unknown."""
    sock = _socket_of(stream)
    if sock is None:
        return "?"
    try:
        if sock.family == socket.AF_UNIX:
            cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
            return f"uid:{_PEERCRED.unpack(cred)[1]}"
        host = str(sock.getpeername()[0])
    except OSError:
        return "?"
    return host.removeprefix("::ffff:") if "." in host else host


class Channel:
    """One connection to a peer actor.

    ``aid`` is set once the handshake completed. ``raddr`` is the address this side dialled;
    on an accepted connection it is what the socket tells of the far end (see
    :func:`accepted_raddr`).
    """

    # The public instance attributes (set in __init__).
    stream: trio.abc.Stream
    max_frame_size: int
    role: str

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        raddr: Address | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        role: str = "peer",
        accepted: bool = False,
        frame_deadline: float = DEFAULT_FRAME_DEADLINE,
        budget: InputBudget | None = None,
    ) -> None:
        self.stream = stream
        self._raddr = raddr
        #: True for an accepted connection whose raddr is still to be read (see raddr).
        self._accepted = accepted and raddr is None
        #: The role this side declared in its handshake ("peer", "child", "lookup").
        self.role = role
        self.max_frame_size = max_frame_size
        #: Seconds a started frame may take to arrive completely, or to go out.
        self.frame_deadline = frame_deadline
        self._aid: Aid | None = None
        self._buf = bytearray()
        # Receive side: the actor-wide budget large frames are reserved from, what this
        # channel holds of it, and when the frame being read must be complete.
        self._budget = budget
        self._reserved = 0
        self._frame_due: float | None = None
        # Send side. One frame goes out at a time: _wire is held (by any task, so that a
        # started frame can be handed over) from a frame's first byte to its last.
        # Answers the message loop gives (post) wait in _outbox when the wire is busy,
        # for a flusher task to send: the loop itself never waits on a send.
        self._wire = trio.Semaphore(1)
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._outbox_room: trio.Event | None = None
        self._call_slots = trio.Semaphore(MAX_PENDING_CALLS)
        self._flushing = False
        self._next_cid = 1
        self._pending: dict[int, _PendingCall] = {}
        self._closed = False
        self.closed_event = trio.Event()
        #: Set by the actor for lazily served channels: called once, before the first call.
        self.on_first_call: Callable[[], None] | None = None
        # Who reads the socket. The message loop (next_inbound) reads while nobody waits
        # for an answer. A lone caller waiting for its answer reads it itself instead
        # (it "leads"): epoll wakes the caller directly, saving the hand-over from the
        # message loop's task to the caller's on every sequential call. Frames a leader
        # reads that are not answers go to _inbox for the message loop.
        self._leader = False
        self._loop_scope: trio.CancelScope | None = None  # the message loop's recv
        self._loop_left_recv: trio.Event | None = None
        self._loop_wakeup: trio.Event | None = None
        self._inbox: deque[Msg | TransportClosed | ProtocolError] = deque()
        # Only a plain socket stream is known to survive a cancelled receive intact; and
        # callers lead only once this side has called over the channel (see call()).
        self._can_lead = isinstance(stream, trio.SocketStream)
        self._may_lead = False
        self._loop_in_plain_recv = False

    def __repr__(self) -> str:
        aid = self._aid
        who = f"{aid.name}:{aid.uuid[:8]}" if aid is not None else "?"
        return f"<Channel {who} raddr={self.raddr}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @functools.cached_property
    def host(self) -> str:
        """The peer host this connection counts against (see :func:`peer_host`); asked of
        the socket on first use only (a dialled lookup connection never needs it)."""
        return peer_host(self.stream)

    @property
    def raddr(self) -> Address | None:
        if self._raddr is None and self._accepted:
            # An accepted connection's far end is asked of the socket on first use only.
            self._accepted = False
            self._raddr = accepted_raddr(self.stream)
        return self._raddr

    @raddr.setter
    def raddr(self, value: Address | None) -> None:
        self._raddr = value
        self._accepted = False

    def connected(self) -> bool:
        """Whether the connection is still open (upstream's spelling of ``not closed``)."""
        return not self._closed

    @classmethod
    async def from_addr(cls, addr: AddressLike, **_transport_kwargs: Any) -> Channel:
        """Connect this process's actor to the actor at ``addr`` (upstream's constructor).

        The channel has completed its handshake and is served by the running actor, so
        ``Portal(chan)`` calls through it; the caller owns it and closes it with
        :meth:`aclose`. Raises :class:`NoRuntime` outside a running actor.
        """
        from ._state import current_actor

        return await current_actor().dial(wrap_address(addr), cache=False)

    def apply_codec(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        refuse("Channel.apply_codec()", "streaming and contexts")

    @property
    def uid(self) -> tuple[str, str]:
        """The peer's ``(name, uuid)``."""
        return self.aid.uid

    @property
    def laddr(self) -> Address | None:
        """This side's socket address (``None`` once the socket is gone)."""
        sock = _socket_of(self.stream)
        if sock is None or sock.fileno() < 0:
            return None
        try:
            return _sockaddr_to_address(sock.family, sock.getsockname())
        except OSError:
            return None

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

    def _frame(self, msg: Msg) -> bytes:
        """``msg`` framed for the wire. A message over the frame size limit is refused
        here, before anything is sent: the peer (whose limit is the same) would take it
        for a protocol violation and drop the connection."""
        payload = encode(msg)
        if len(payload) > self.max_frame_size:
            raise FrameTooLarge(
                f"a {type(msg).__name__.lower()} message of {len(payload)} bytes exceeds the "
                f"maximum frame size {self.max_frame_size}"
            )
        return _HEADER.pack(len(payload)) + payload

    async def send(self, msg: Msg) -> None:
        """Send one message. A frame that started going out is finished even if the
        caller is cancelled meanwhile (within ``frame_deadline``; past it the channel is
        closed, since the peer could only read garbage from it)."""
        frame = self._frame(msg)
        wire = self._wire
        # Frames must not interleave, but a free wire need not cost a schedule point
        # (_write has its own checkpoint).
        if wire.value:
            wire.acquire_nowait()
        else:
            await wire.acquire()
        try:
            if self._closed:
                raise TransportClosed(f"{self!r} is closed")
            await self._write(frame)
        finally:
            wire.release()

    def post(self, msg: Msg, nursery: trio.Nursery) -> None:
        """Send ``msg`` without waiting for the wire: for the message loop's own answers.

        On a free plain socket the frame is written at once if the kernel takes it;
        otherwise it is queued for a flusher task started in ``nursery``. Never waits:
        the caller keeps the queue bounded (:attr:`outbox_full`).
        Raises ``TypeError`` / ``msgspec.EncodeError`` if ``msg`` cannot be encoded, and
        :class:`FrameTooLarge` if it would not fit in a frame.
        """
        frame = self._frame(msg)
        if self._closed:
            return  # nobody will read it
        if not self._outbox and self._wire.value and isinstance(self.stream, trio.SocketStream):
            self._wire.acquire_nowait()
            try:
                sent = os.write(self.stream.socket.fileno(), frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._wire.release()
                log.debug("%r: answer not sent (%s)", self, exc)
                return  # the message loop sees the broken connection next
            if sent == len(frame):
                self._wire.release()
                return
            # The frame started: the flusher takes the wire over and finishes it first.
            self._queue(frame[sent:], front=True)
            nursery.start_soon(self._flush, True)
            self._flushing = True
        else:
            self._queue(frame)
            if not self._flushing:
                self._flushing = True
                nursery.start_soon(self._flush, False)

    @property
    def outbox_full(self) -> bool:
        """More than a bounded amount of posted answers waits for the peer to read it:
        the reader holds further calls back (see ``Actor._message_loop``) instead of
        waiting here, since a reader that waits on a send can wedge a channel whose two
        ends both flood."""
        return self._outbox_bytes > _OUTBOX_LIMIT and not self._closed

    async def wait_outbox_room(self) -> None:
        """Return once :attr:`outbox_full` is false (or the channel closed)."""
        while self.outbox_full:
            self._outbox_room = room = trio.Event()
            await room.wait()

    def _queue(self, frame: bytes, front: bool = False) -> None:
        if front:
            self._outbox.appendleft(frame)
        else:
            self._outbox.append(frame)
        self._outbox_bytes += len(frame)

    def _dequeue(self) -> bytes:
        frame = self._outbox.popleft()
        self._outbox_bytes -= len(frame)
        room = self._outbox_room
        if room is not None and self._outbox_bytes <= _OUTBOX_LIMIT:
            self._outbox_room = None
            room.set()
        return frame

    async def _flush(self, holding: bool) -> None:
        """Send the queued frames; ``holding``: the wire is already this task's (the
        first queued frame is the rest of a started one)."""
        try:
            if not holding:
                await self._wire.acquire()
            try:
                while self._outbox and not self._closed:
                    frame = self._dequeue()
                    await self._write(frame, started=holding)
                    holding = False
            finally:
                self._flushing = False
                self._wire.release()
        except TransportClosed as exc:
            log.debug("%r: queued answers not sent (%s)", self, exc)
        finally:
            self._flushing = False

    async def _write(self, frame: bytes, started: bool = False) -> None:
        """Write one whole frame (the caller holds the wire). Cancel-safe: cancelled
        before its first byte left, nothing was sent; after, it is finished shielded."""
        stream = self.stream
        try:
            if isinstance(stream, trio.SocketStream):
                view = memoryview(frame)
                sent = 0
                if not started:
                    # trio's socket send raises Cancelled only when it sent nothing.
                    sent = await stream.socket.send(view)
                if sent < len(frame):
                    with trio.CancelScope(
                        shield=True, deadline=trio.current_time() + self.frame_deadline
                    ):
                        while sent < len(frame):
                            sent += await stream.socket.send(view[sent:])
                    if sent < len(frame):
                        await self._abandon_frame(sent, len(frame))
            elif not self.handshaken:
                # A cancelled handshake closes the channel anyway (and a TLS stream's
                # first send runs the TLS handshake, which a silent peer never finishes).
                await stream.send_all(frame)
            else:
                # Other streams (TLS) are not cancel-safe mid-send at all.
                with trio.CancelScope(
                    shield=True, deadline=trio.current_time() + self.frame_deadline
                ) as scope:
                    await stream.send_all(frame)
                if scope.cancelled_caught:
                    await self._abandon_frame(None, len(frame))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise TransportClosed(f"send on {self!r} failed: {exc}") from exc

    async def _abandon_frame(self, sent: int | None, size: int) -> NoReturn:
        done = "part" if sent is None else f"{sent} bytes"
        log.error(
            "%r: could not finish sending a %d-byte frame within %gs (%s sent; the peer "
            "does not read); closing the channel",
            self,
            size,
            self.frame_deadline,
            done,
        )
        with trio.CancelScope(shield=True):
            await self.aclose()
        raise TransportClosed(
            f"{self!r}: a frame could not be sent within {self.frame_deadline:g}s; channel closed"
        )

    async def _fill(self, need: int) -> None:
        while len(self._buf) < need:
            if self._buf and self._frame_due is None:
                # A frame started arriving: the rest of it has a deadline.
                self._frame_due = trio.current_time() + self.frame_deadline
            try:
                if self._frame_due is None:
                    chunk = await self.stream.receive_some(_RECV_CHUNK)
                else:
                    chunk = b""
                    with trio.move_on_at(self._frame_due) as late:
                        chunk = await self.stream.receive_some(_RECV_CHUNK)
                    if late.cancelled_caught:
                        raise FrameTimeout(
                            f"a frame from {self.raddr or 'the peer'} was not complete "
                            f"within the frame deadline ({self.frame_deadline:g}s): "
                            f"{len(self._buf)} of {need} bytes arrived"
                        )
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise TransportClosed(f"receive on {self!r} failed: {exc}") from exc
            if not chunk:
                raise TransportClosed(f"{self!r}: peer closed the connection")
            self._buf += chunk

    async def recv(self) -> Msg:
        """The next message. Raises TransportClosed at EOF, ProtocolError on a bad frame
        (FrameTimeout when a started frame does not complete within the deadline)."""
        await self._fill(_HEADER.size)
        (length,) = _HEADER.unpack_from(self._buf)
        if length > self.max_frame_size:
            raise FrameTooLarge(
                f"frame of {length} bytes exceeds the maximum frame size {self.max_frame_size}"
            )
        end = _HEADER.size + length
        if len(self._buf) < end:
            budget = self._budget
            if budget is not None and length > _UNBUDGETED_FRAME and not self._reserved:
                # Stop reading this channel until the actor may buffer the payload; the
                # deadline counts from when it may.
                await budget.reserve(length)
                self._reserved = length
                self._frame_due = trio.current_time() + self.frame_deadline
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
            self._frame_due = None
            self._give_back()

    def _give_back(self) -> None:
        if self._reserved:
            assert self._budget is not None
            self._budget.release(self._reserved)
            self._reserved = 0

    async def next_inbound(self) -> Msg:
        """The next message for the actor's message loop (its only reader of inbound
        traffic): frames read by a leading caller first, else the socket itself.

        Raises TransportClosed at EOF and ProtocolError on a bad frame, as :meth:`recv`.
        """
        while True:
            if self._inbox:
                item = self._inbox.popleft()
                if isinstance(item, TransportClosed | ProtocolError):
                    raise item
                return item
            if self._leader:
                self._loop_wakeup = wakeup = trio.Event()
                await wakeup.wait()
                continue
            if not self._may_lead:
                # Nobody on this side calls over it (yet): a receive that no caller can
                # take over skips the cancel scope (most of a server's channels).
                self._loop_in_plain_recv = True
                try:
                    return await self.recv()
                finally:
                    self._loop_in_plain_recv = False
            with trio.CancelScope() as scope:
                self._loop_scope = scope
                try:
                    return await self.recv()
                finally:
                    self._loop_scope = None
                    if self._loop_left_recv is not None:
                        self._loop_left_recv.set()
            # A caller took the socket over (recv is cancel-safe: a partial frame stays
            # buffered); wait for it to hand it back.

    def _wake_loop(self) -> None:
        if self._loop_wakeup is not None:
            self._loop_wakeup.set()
            self._loop_wakeup = None

    def _claim(self) -> None:
        """Take the socket over from the message loop (a lone caller is about to wait)."""
        self._leader = True
        if self._loop_scope is not None:
            self._loop_left_recv = trio.Event()
            self._loop_scope.cancel()

    def _release(self) -> None:
        self._leader = False
        self._loop_left_recv = None
        self._wake_loop()

    async def _read_until(self, pending: _PendingCall) -> None:
        """Read frames until ``pending`` is answered, routing the others.

        Also returns, unanswered, when the message loop has fallen behind on the frames
        handed to it: the loop then reads the socket itself again, so a peer that floods
        calls is slowed down by the kernel (the loop stops reading while its answers
        wait to be sent) instead of by this side's memory.
        """
        if self._loop_left_recv is not None:
            await self._loop_left_recv.wait()
        while not pending.done.is_set():
            try:
                msg = await self.recv()
            except (TransportClosed, ProtocolError) as exc:
                # The message loop acts on it: reports it, closes the channel and so
                # fails every outstanding call, this one included.
                self._inbox.append(exc)
                self._wake_loop()
                return
            if isinstance(msg, Return | Error) and msg.cid != 0:
                self.deliver(msg)
            else:
                self._inbox.append(msg)
                self._wake_loop()
                if len(self._inbox) >= _INBOX_LIMIT:
                    return

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_pending(TransportClosed(f"{self!r} closed"))
        self._give_back()
        self._outbox.clear()
        self._outbox_bytes = 0
        if self._outbox_room is not None:
            self._outbox_room.set()
            self._outbox_room = None
        try:
            if isinstance(self.stream, trio.SocketStream):
                # Closing a plain socket never blocks: skip aclose()'s schedule point.
                self.stream.socket.close()
            else:
                # A TLS stream says goodbye (close_notify) first, or even runs the
                # handshake a peer never started: bounded, after which the transport is
                # closed regardless. A peer that hung up or spoke garbage makes that
                # goodbye fail; trio has closed the transport by then.
                with trio.CancelScope(shield=True), trio.move_on_after(_TLS_CLOSE_TIMEOUT):
                    try:
                        await self.stream.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
        finally:
            self.closed_event.set()

    # -- handshake -----------------------------------------------------------------------

    async def handshake(
        self, local: Handshake, timeout: float, secret: bytes | None = None, sent: bool = False
    ) -> Aid:
        """Exchange identities (and prove the shared secret, when either side has one).

        The whole exchange is bounded by ``timeout`` seconds (slow peers are refused).
        ``sent``: ``local`` already went out on this channel. Raises
        :class:`AuthenticationError` when the peer fails to prove the secret or demands one
        this side lacks.
        """
        with trio.move_on_after(timeout) as scope:
            if not sent:
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
        if isinstance(msg, Error):
            raise PeerRefused(
                f"peer refused the connection: {msg.type_name}: {msg.message}", msg.type_name
            )
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
        # At most MAX_PENDING_CALLS calls in flight per channel (the others wait here):
        # the peer then never has more to hold back than it can (see Actor._message_loop),
        # so two ends flooding each other cannot both stop reading.
        slots = self._call_slots
        if slots.value:
            slots.acquire_nowait()  # no schedule point on the common path
        else:
            await slots.acquire()
        try:
            return await self._call(ns, func, kwargs)
        finally:
            slots.release()

    async def _call(self, ns: str, func: str, kwargs: dict[str, Any]) -> Any:
        cid = self._next_cid
        self._next_cid += 1
        pending = _PendingCall()
        if self._can_lead:
            # From now on the message loop receives in a scope a caller can cancel. One
            # parked in a plain receive still reads this first answer.
            self._may_lead = True
        self._pending[cid] = pending
        try:
            await self.send(Call(cid=cid, ns=ns, func=func, kwargs=kwargs))
            # Claim the socket only once the call is out: a caller that stopped the
            # message loop and then blocked in a send to a peer doing the same would
            # leave both ends not reading.
            if (
                self._may_lead
                and not self._leader
                and len(self._pending) == 1
                and not self._loop_in_plain_recv
                and not pending.done.is_set()
            ):
                self._claim()
                try:
                    await self._read_until(pending)
                finally:
                    self._release()
            if not pending.done.is_set():
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
    return unpack_error(msg)


async def open_stream(addr: Address, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> trio.abc.Stream:
    """Dial ``addr``. Raises ``OSError`` (e.g. ConnectionRefusedError) or ``TimeoutError``."""
    if isinstance(addr, TCPAddress) and not _is_ip_literal(addr.host):
        with trio.move_on_after(timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(addr.host, addr.port)
            return stream
        raise _connect_timeout(addr, timeout)
    # IP literals (what registries hand out) and UDS: one plain non-blocking connect,
    # without open_tcp_stream's name resolution and happy-eyeballs task machinery.
    if isinstance(addr, TCPAddress):
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        target: str | tuple[str, int] = (addr.host, addr.port)
    else:
        check_uds_path(addr)
        family, target = socket.AF_UNIX, addr.path
    await trio.lowlevel.checkpoint_if_cancelled()
    sock = socket.socket(family, socket.SOCK_STREAM)
    connected = False
    try:
        sock.setblocking(False)
        err = sock.connect_ex(target)
        if err == errno.EINPROGRESS and _established(sock):
            err = 0  # loopback: the TCP handshake completed inside connect()
        elif err == errno.EINPROGRESS or (err == errno.EAGAIN and family == socket.AF_UNIX):
            with trio.move_on_after(timeout):
                err = await _finish_connect(sock, target, err)
            if err in (errno.EINPROGRESS, errno.EAGAIN):
                raise _connect_timeout(addr, timeout)
        if err:
            raise OSError(err, f"connecting to {addr} failed: {os.strerror(err)}")
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        connected = True
        return stream
    finally:
        if not connected:
            sock.close()


async def _finish_connect(sock: socket.socket, target: str | tuple[str, int], err: int) -> int:
    """Wait for a connect that is in flight; returns its errno (0: connected)."""
    pause, longest = _UDS_BACKLOG_RETRY
    while err == errno.EAGAIN:
        # A Unix socket whose accept backlog is full: a blocking connect would wait for
        # room, so try again shortly.
        await trio.sleep(pause)
        pause = min(pause * 2, longest)
        err = sock.connect_ex(target)
    if err == errno.EINPROGRESS:
        await trio.lowlevel.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return err


def _established(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _connect_timeout(addr: Address, timeout: float) -> TimeoutError:
    return TimeoutError(errno.ETIMEDOUT, f"connecting to {addr} timed out after {timeout}s")


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
