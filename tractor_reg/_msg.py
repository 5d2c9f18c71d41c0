"""Wire messages: one tagged union of msgspec ``Struct``\\ s, msgpack-encoded.

Every frame on a channel carries exactly one :data:`Msg`. The tag (field ``t``) selects the
type, so a typed decoder rejects unknown message types and malformed fields in one step.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

#: Bumped on incompatible wire changes; peers with another major refuse the handshake.
PROTOCOL_VERSION = 1


class Handshake(msgspec.Struct, tag="hello", tag_field="t", frozen=True):
    """The first frame each side sends: who it is."""

    name: str
    uuid: str
    pid: int
    is_registrar: bool
    version: int = PROTOCOL_VERSION
    #: The addresses this actor accepts connections on (plain tuples).
    accept_addrs: list[tuple[str, int | str]] = []
    #: "child" on the connection a freshly spawned actor opens to its parent.
    role: str = "peer"
    #: A fresh random challenge for this connection (see tractor_reg._security).
    nonce: bytes = b""
    #: This side holds a shared secret and accepts only peers that prove it.
    auth: bool = False


class Auth(msgspec.Struct, tag="auth", tag_field="t", frozen=True):
    """Proof of the shared secret: an HMAC over both nonces and the sender's uuid."""

    mac: bytes


class Call(msgspec.Struct, tag="call", tag_field="t", frozen=True):
    """Run ``ns.func(**kwargs)`` in the receiving actor; answer with Return or Error."""

    cid: int
    ns: str
    func: str
    kwargs: dict[str, Any] = {}


class Return(msgspec.Struct, tag="return", tag_field="t", frozen=True):
    cid: int
    value: Any = None


class Error(msgspec.Struct, tag="error", tag_field="t", frozen=True):
    """A failure. ``cid`` is 0 for errors about the channel itself (protocol violations).

    Every field after ``src_uid`` has a default, so frames from peers that predate it
    still decode; peers that predate it ignore it (unknown fields are skipped).
    """

    cid: int
    #: ``__name__`` of the boxed exception's type (upstream's ``boxed_type_str``).
    type_name: str
    message: str
    traceback: str = ""
    #: ``[name, uuid]`` of the actor where the original exception was raised.
    src_uid: list[str] | None = None
    #: ``__module__`` of the boxed type ("" when unknown).
    type_module: str = ""
    #: Name and module of the original exception's type when it differs from the boxed
    #: one (a relayed ``RemoteActorError``); "" means "same as the boxed type".
    src_type_name: str = ""
    src_type_module: str = ""
    #: ``[name, uuid]`` of every actor that boxed it, first (the source) to last.
    relay_path: list[list[str]] = []


class CancelCall(msgspec.Struct, tag="cancel", tag_field="t", frozen=True):
    """Cancel the in-flight call ``cid`` (the caller gave up waiting)."""

    cid: int


Msg: TypeAlias = Handshake | Auth | Call | Return | Error | CancelCall

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Msg] = msgspec.msgpack.Decoder(Msg)


def encode(msg: Msg) -> bytes:
    return _encoder.encode(msg)


def decode(payload: bytes | bytearray | memoryview) -> Msg:
    """Decode one frame payload; raises ``msgspec.DecodeError``/``ValidationError``."""
    return _decoder.decode(payload)
