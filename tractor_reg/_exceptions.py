"""The exception hierarchy, and the boxing of exceptions that cross actor boundaries.

Every error this package raises on purpose derives from :class:`TractorRegError`.
Errors that upstream ``tractor`` code expects as builtin types (``RuntimeError`` for boot
rules, ``ValueError`` for bad arguments) are raised as subclasses of *both* our root and
the builtin, so ``except RuntimeError`` keeps working and ``except TractorRegError``
catches everything of ours.

An exception raised in one actor reaches another as an ``Error`` wire message
(:func:`pack_error`) and is raised there as a :class:`RemoteActorError`
(:func:`unpack_error`) whose ``boxed_type`` is the original type when this process knows
it: a builtin, one of ours, one of ``trio``'s, or one registered with
:func:`reg_err_types`.
"""

from __future__ import annotations

import builtins
import logging
import sys
import textwrap
import traceback
from collections.abc import Iterable
from typing import Any, TypeGuard

import msgspec
import trio

from ._msg import Error

log = logging.getLogger("tractor_reg.errors")


class TractorRegError(Exception):
    """Root of every exception raised by ``tractor_reg``."""


# -- wire protocol -------------------------------------------------------------------------


class MessagingError(TractorRegError):
    """An IPC message, its ordering or its dialog was wrong (upstream's name)."""


class ProtocolError(MessagingError):
    """A peer violated the wire protocol (garbage, oversized or unexpected frame).

    Only the offending channel is closed; the actor keeps serving everyone else.
    """


class FrameTooLarge(ProtocolError):
    """A frame's declared length exceeds the configured maximum frame size."""


class FrameTimeout(ProtocolError):
    """A frame that had started arriving was not complete within the frame deadline
    (a peer that sends a header and then trickles or stalls)."""


class HandshakeError(ProtocolError):
    """The identity handshake failed or did not complete within its deadline."""


class PeerRefused(HandshakeError):
    """The peer answered the connection with an error instead of its handshake (for
    example ``LimitExceeded``: it serves too many connections). Something is alive and
    speaking the protocol at that address."""

    def __init__(self, message: str, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name


class AuthenticationError(HandshakeError):
    """The peer could not prove the shared secret, or demanded one this side lacks."""

    def __init__(self, message: str, peer_is_registrar: bool = False) -> None:
        super().__init__(message)
        self.peer_is_registrar = peer_is_registrar


class TransportClosed(TractorRegError):
    """The channel's underlying connection closed (peer gone, or closed locally).

    Upstream's constructor: ``TransportClosed(message, loglevel=..., src_exc=None)``;
    ``src_exc`` is the transport error behind it (``__cause__`` when chained).
    ``loglevel`` and ``raise_on_report`` steer upstream's internal reporting: accepted,
    unused.
    """

    def __init__(
        self,
        message: str = "",
        loglevel: str = "transport",
        src_exc: BaseException | None = None,
        raise_on_report: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self._src_exc = src_exc
        if src_exc is not None and self.__cause__ is None:
            self.__cause__ = src_exc

    @property
    def src_exc(self) -> BaseException | None:
        return self.__cause__ or self._src_exc


# -- addresses -----------------------------------------------------------------------------


class AddressError(TractorRegError, ValueError):
    """A value is not a valid TCP or UDS address (tuple or ``tcp://``/``uds://`` string)."""


# -- runtime -------------------------------------------------------------------------------


class RuntimeBootError(TractorRegError, RuntimeError):
    """The root actor could not boot (registry address occupied, nested root, ...)."""


class NoRuntime(TractorRegError, RuntimeError):
    """An API that needs a running actor was called outside of one."""


class RuntimeFailure(TractorRegError, RuntimeError):
    """The actor runtime failed: bad environment, failed spawn or API misuse (upstream)."""


class ActorFailure(RuntimeFailure):
    """An actor failed to boot before or after it was spawned (upstream's name)."""


class ActorTooSlowError(RuntimeFailure):
    """A peer did not acknowledge a cancel request within the bounded wait (upstream)."""


class InternalError(TractorRegError, RuntimeError):
    """The runtime reached a state it considers impossible (a bug in ``tractor_reg``)."""


class NoResult(TractorRegError, RuntimeError):
    """No final result is expected from this actor (upstream's name)."""


class InvalidArgument(TractorRegError, ValueError):
    """A runtime keyword has a value this package cannot use (a start method, a transport)."""


class ActorNotFound(TractorRegError, LookupError, RuntimeError):
    """``find_actor(..., raise_on_none=True)`` found no actor registered under the name.

    A ``RuntimeError`` as upstream's is, and a ``LookupError`` (a failed lookup).
    """


class RegistryTimeout(TractorRegError, TimeoutError):
    """A registrar accepted the call but did not answer in time (stopped, overloaded or
    a half-open connection); callers fail over to the next registry address."""


class RegistryUnavailable(TractorRegError, ConnectionError):
    """No registrar could be reached at any of the configured registry addresses."""


class RPCNotAllowed(TractorRegError):
    """A call named a namespace or function the actor does not expose."""


class ModuleNotExposed(RPCNotAllowed, ModuleNotFoundError):
    """A call named a module the actor did not enable (``enable_modules``).

    A ``ModuleNotFoundError`` as upstream's is, and an :class:`RPCNotAllowed`.
    """


# -- boxed remote errors -------------------------------------------------------------------

#: Upstream's names for ``Error`` fields, accepted as ``RemoteActorError`` keywords.
_FIELD_ALIASES = {
    "boxed_type_str": "type_name",
    "src_type_str": "src_type_name",
    "tb_str": "traceback",
}
_ERROR_FIELDS = frozenset(Error.__struct_fields__) - {"message"}


def _uid_list(value: Any) -> list[str] | None:
    return None if value is None else [str(part) for part in value]


class RemoteActorError(TractorRegError):
    """An exception raised inside another actor, boxed for delivery to this one.

    ``RemoteActorError(message, ipc_msg=None, boxed_type=None, **msgdata)`` as upstream:
    built from an ``Error`` wire message, or by hand from a message, the boxed type and
    any ``Error`` field given as a keyword (upstream's names ``tb_str``,
    ``boxed_type_str``, ``src_type_str`` are accepted too).

    Attributes (upstream's): ``boxed_type`` (the boxed exception's type, or ``None`` when
    this process does not know it; see :func:`get_err_type`), ``boxed_type_str``,
    ``src_type``/``src_type_str`` (the original exception's type, which differs from the
    boxed one when the error was relayed through several actors), ``tb_str``,
    ``src_uid`` (the actor it was raised in), ``relay_path``/``relay_uid`` (the actors
    that boxed it, the last one first sent it here), ``message``, ``msgdata``,
    ``ipc_msg``, ``pformat()``, ``reprol()``, ``is_inception()``, ``unwrap()``.

    Also ``type_name`` (= ``boxed_type_str`` as sent), ``remote_message`` (``str()`` of
    the remote exception) and ``remote_traceback`` (= ``tb_str``).
    """

    def __init__(
        self,
        message: str,
        ipc_msg: Error | None = None,
        boxed_type: type[BaseException] | None = None,
        **msgdata: Any,
    ) -> None:
        super().__init__(message)
        if ipc_msg is not None and not isinstance(ipc_msg, Error):
            raise TypeError(f"ipc_msg must be an Error message, not {type(ipc_msg).__name__}")
        if boxed_type is not None and not (
            isinstance(boxed_type, type) and issubclass(boxed_type, BaseException)
        ):
            raise TypeError(f"boxed_type must be an exception type, not {boxed_type!r}")
        fields: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}
        for key, value in msgdata.items():
            field = _FIELD_ALIASES.get(key, key)
            if field not in _ERROR_FIELDS:
                self._extra[key] = value
            elif field == "src_uid":
                fields[field] = _uid_list(value)
            elif field == "relay_path":
                fields[field] = [_uid_list(uid) for uid in value]
            else:
                fields[field] = value
        if boxed_type is not None:
            fields["type_name"] = boxed_type.__name__
            fields["type_module"] = boxed_type.__module__
        if ipc_msg is None:
            ipc_msg = Error(cid=0, type_name="", message=message)
        self._message = message
        self._msg = msgspec.structs.replace(ipc_msg, **fields) if fields else ipc_msg
        self._boxed_type = boxed_type
        self._boxed_resolved = boxed_type is not None
        self._src_type: type[BaseException] | None = None
        self._src_resolved = False

    # -- upstream's attributes -----------------------------------------------------------

    @property
    def message(self) -> str:
        """The message this error was constructed with (``args[0]``)."""
        return self._message

    @property
    def ipc_msg(self) -> Error:
        """The ``Error`` message describing the boxed exception."""
        return self._msg

    @property
    def msgdata(self) -> dict[str, Any]:
        """The ``Error`` fields (under ours and upstream's names) plus extra keywords."""
        data = dict(self._extra)
        data.update(msgspec.structs.asdict(self._msg))
        data["boxed_type_str"] = self._msg.type_name
        data["src_type_str"] = self.src_type_str
        data["tb_str"] = self._msg.traceback
        return data

    @property
    def boxed_type(self) -> type[BaseException] | None:
        """The boxed exception's type, or ``None`` when this process does not know it."""
        if not self._boxed_resolved:
            self._boxed_resolved = True
            self._boxed_type = _resolve(self._msg.type_name, self._msg.type_module)
        return self._boxed_type

    @property
    def boxed_type_str(self) -> str:
        boxed = self.boxed_type
        if boxed is not None:
            return boxed.__name__
        return self._msg.type_name or "<unknown>"

    @property
    def src_type_str(self) -> str:
        """The name of the original exception's type (where it was first raised)."""
        return self._msg.src_type_name or self._msg.type_name or "<unknown>"

    @property
    def src_type(self) -> type[BaseException] | None:
        """The original exception's type, or ``None`` when this process does not know it."""
        if not self._msg.src_type_name:
            return self.boxed_type
        if not self._src_resolved:
            self._src_resolved = True
            self._src_type = _resolve(self._msg.src_type_name, self._msg.src_type_module)
        return self._src_type

    @property
    def tb_str(self) -> str:
        """The traceback text of the boxed exception, as formatted where it was raised."""
        return self._msg.traceback

    @property
    def src_uid(self) -> tuple[str, str] | None:
        """``(name, uuid)`` of the actor the original exception was raised in."""
        uid = self._msg.src_uid
        return (uid[0], uid[1]) if uid and len(uid) == 2 else None

    @property
    def relay_path(self) -> list[tuple[str, str]]:
        """``(name, uuid)`` of every actor that boxed the error, source first."""
        return [(uid[0], uid[1]) for uid in self._msg.relay_path if len(uid) == 2]

    @property
    def relay_uid(self) -> tuple[str, str] | None:
        """The actor that boxed the error last (the one it arrived from)."""
        path = self.relay_path
        return path[-1] if path else None

    def is_inception(self) -> bool:
        """Whether the error was relayed: boxed by an actor other than its source."""
        return len(self._msg.relay_path) > 1

    def reprol(self) -> str:
        """A one-line rendering: ``RemoteActorError[ValueError](src_uid=...)``."""
        text = f"{type(self).__name__}[{self.boxed_type_str}]"
        if self.src_uid is not None:
            text += f"(src_uid={self.src_uid!r})"
        return text

    def pformat(self, with_type_header: bool = True) -> str:
        """A multi-line rendering: the header, the source/relay actors and the boxed
        remote traceback."""
        lines = [f"{self.reprol()}: {self._message}" if with_type_header else self._message]
        fields = [
            ("boxed_type", self.boxed_type_str),
            ("src_type", self.src_type_str),
            ("src_uid", self.src_uid),
            ("relay_uid", self.relay_uid if self.is_inception() else None),
        ]
        lines += [f" |_{key}={value!r}" for key, value in fields if value]
        if self.tb_str:
            lines.append(textwrap.indent(self.tb_str.rstrip(), " | "))
        return "\n".join(lines)

    def unwrap(self) -> BaseException:
        """The original exception rebuilt locally as best it can be: its type called
        with the remote traceback text, or a ``RuntimeError`` naming the unknown type."""
        src = self.src_type
        if src is not None:
            try:
                return src(self.tb_str)
            except TypeError:  # a type whose constructor takes other arguments
                pass
        return RuntimeError(f"{self.src_type_str}: {self.tb_str}")

    # -- our attributes ------------------------------------------------------------------

    @property
    def type_name(self) -> str:
        """The boxed exception's type name as sent (``boxed_type_str`` on the wire)."""
        return self._msg.type_name

    @property
    def remote_message(self) -> str:
        """``str()`` of the remote exception."""
        return self._msg.message

    @property
    def remote_traceback(self) -> str:
        return self._msg.traceback

    def __str__(self) -> str:
        text = self._message
        if self._msg.traceback:
            text += "\n\n--- remote traceback ---\n" + self._msg.traceback.rstrip()
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        boxed = self._boxed_type if self._boxed_resolved else None
        return (_rebuild, (type(self), self._message, self._msg, boxed, self._extra))


def _rebuild(
    cls: type[RemoteActorError],
    message: str,
    msg: Error,
    boxed_type: type[BaseException] | None,
    extra: dict[str, Any],
) -> RemoteActorError:
    return cls(message, msg, boxed_type, **extra)


class ActorCrashed(RemoteActorError):
    """A child actor's process exited on its own (crash, signal) instead of being cancelled."""


class ContextCancelled(RemoteActorError):
    """An inter-actor task context was cancelled (upstream's name).

    Contexts are a non-goal (streaming): exported so ``except`` clauses work; never raised.
    """

    @property
    def canceller(self) -> tuple[str, str] | None:
        """``(name, uuid)`` of the actor that requested the cancellation."""
        uid = self._extra.get("canceller")
        return (str(uid[0]), str(uid[1])) if uid and len(uid) == 2 else None


class MsgTypeError(RemoteActorError):
    """A message payload failed type validation (upstream's IPC ``TypeError``).

    Payload specs belong to streaming/contexts (a non-goal): exported, never raised.
    """


class StreamOverrun(RemoteActorError, trio.TooSlowError):
    """A stream's sender outpaced its receiver (upstream's name).

    Streaming is a non-goal: exported so ``except`` clauses work; never raised.
    """


# -- non-goals: asyncio infection, the debugger ----------------------------------------------


class AsyncioCancelled(TractorRegError):
    """Upstream's asyncio-side cancellation; asyncio infection is a non-goal (never raised)."""


class AsyncioTaskExited(TractorRegError):
    """Upstream's asyncio task exit; asyncio infection is a non-goal (never raised)."""


class TrioCancelled(TractorRegError):
    """Upstream's trio-side cancellation seen by asyncio; a non-goal (never raised)."""


class TrioTaskExited(TractorRegError):
    """Upstream's trio task exit seen by asyncio; a non-goal (never raised)."""


class DebugRequestError(TractorRegError, RuntimeError):
    """Upstream's debugger lock failure; the debugger is a non-goal (never raised)."""


# -- registry / backends -------------------------------------------------------------------


class RegistryError(TractorRegError):
    """Base of errors raised by the registrar or a storage backend."""


class InvalidRequest(RegistryError, ValueError):
    """A registry call carried an argument of the wrong type or shape."""


class PermissionDenied(RegistryError, PermissionError):
    """The caller may not do this (e.g. unregister a registration it holds no token of)."""


class ChangesExpired(RegistryError):
    """A watcher asked for changes older than the retained history; re-read and resume."""


class BackendError(RegistryError):
    """A storage backend failed; the driver's exception is chained as ``__cause__``."""


class BackendClosed(BackendError):
    """The backend was used after :meth:`RegistryBackend.aclose`."""


class StoreUnavailable(BackendError):
    """The store cannot be reached or opened (path not writable, server down, auth)."""


class StoreBusy(BackendError):
    """The store stayed locked by someone else past the configured busy timeout."""


class SchemaError(BackendError):
    """The store's schema is not one this code can use: newer than the code, foreign
    (another application's database), or not a database at all. Nothing was changed."""


class BackendURLError(BackendError, ValueError):
    """A backend URL is malformed, has an unknown scheme or unknown options."""


class LimitExceeded(RegistryError):
    """A configured limit (entries, entries per peer, addresses per uid, connections) was
    hit; the offender is refused and everyone else is unaffected."""


# -- exception types known by name ---------------------------------------------------------


def _is_exc_type(obj: object) -> TypeGuard[type[BaseException]]:
    return isinstance(obj, type) and issubclass(obj, BaseException)


#: Every exception class of this module, by name.
_OWN_TYPES: dict[str, type[BaseException]] = {
    name: obj
    for name, obj in list(globals().items())
    if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == __name__
}
#: Types registered with reg_err_types(), by ``__name__`` and by qualified name.
_registered: dict[str, type[BaseException]] = {}
_registered_qual: dict[str, type[BaseException]] = {}


def _qualname(exc_type: type[BaseException]) -> str:
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def reg_err_types(exc_types: Iterable[type[BaseException]]) -> None:
    """Register application exception types so that errors of these types raised in
    other actors arrive with ``RemoteActorError.boxed_type`` set to them.

    Registration is per process (the receiving side's); a later type with the same
    ``__name__`` replaces an earlier one for lookups by bare name.
    """
    if isinstance(exc_types, (str, bytes, type)) or not isinstance(exc_types, Iterable):
        raise TypeError(f"reg_err_types() takes a list of exception types, not {exc_types!r}")
    types = list(exc_types)
    for exc_type in types:
        if not _is_exc_type(exc_type):
            raise TypeError(
                f"reg_err_types() takes exception types; {exc_type!r} is not a "
                "subclass of BaseException"
            )
    for exc_type in types:
        log.debug("registered remote error type %s", _qualname(exc_type))
        _registered[exc_type.__name__] = exc_type
        _registered_qual[_qualname(exc_type)] = exc_type


def _by_bare_name(name: str) -> type[BaseException] | None:
    package = sys.modules.get(__package__ or "")
    namespaces: tuple[dict[str, Any], ...] = (
        vars(builtins),
        _OWN_TYPES,
        # the package's public names: exception types of its other modules too
        vars(package) if package is not None else {},
        _registered,
        vars(trio),
    )
    for namespace in namespaces:
        found = namespace.get(name)
        if _is_exc_type(found):
            return found
    return None


def get_err_type(type_name: str) -> type[BaseException] | None:
    """The exception type called ``type_name`` in this process, or ``None``.

    Looked up among the builtins, ``tractor_reg``'s public exceptions, the types registered
    with :func:`reg_err_types` and ``trio``'s exceptions, in that order. A qualified
    name (``"myapp.errors.QuoteError"``) matches only the type of that module.
    """
    if not isinstance(type_name, str):
        raise TypeError(f"get_err_type() takes a type name (str), not {type_name!r}")
    if "." not in type_name:
        return _by_bare_name(type_name)
    exact = _registered_qual.get(type_name)
    if exact is not None:
        return exact
    module, _, name = type_name.rpartition(".")
    found = _by_bare_name(name)
    return found if found is not None and found.__module__ == module else None


def _resolve(name: str, module: str) -> type[BaseException] | None:
    """The local type for a boxed ``module.name``: the exact type when known, else a
    registered type of that name (a script's types live in ``__main__`` in one process
    and ``__mp_main__`` in its children), else ``None``."""
    if not name:
        return None
    if module:
        exact = get_err_type(f"{module}.{name}")
        if exact is not None:
            return exact
    found = _by_bare_name(name)
    if found is None:
        return None
    if not module or found.__module__ == module or _registered.get(name) is found:
        return found
    return None


# -- boxing for the wire -------------------------------------------------------------------


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, even for an exception whose ``__str__`` itself fails: boxing an error
    must never raise (the channel that carries it would be dropped)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - user code's __str__ may raise anything
        return f"<str() of {type(exc).__name__} failed>"


def pack_error(
    exc: BaseException,
    *,
    cid: int = 0,
    uid: tuple[str, str] | None = None,
    prefix: str = "",
    tb_str: str | None = None,
) -> Error:
    """The ``Error`` message that boxes ``exc``, raised in the actor ``uid``.

    A :class:`RemoteActorError` (an error this actor received from another and let
    through) keeps its source actor and type and gets this actor appended to its relay
    path, so the receiver sees where it started and who passed it on.
    """
    here = list(uid) if uid is not None else None
    tb = "".join(traceback.format_exception(exc)) if tb_str is None else tb_str
    # A RemoteActorError's str() appends the remote traceback, which tb already holds.
    text = exc.message if isinstance(exc, RemoteActorError) else _text_of(exc)
    exc_type = type(exc)
    src_uid = here
    src_name = src_module = ""
    path: list[list[str]] = []
    if isinstance(exc, RemoteActorError):
        inner = exc.ipc_msg
        if inner.type_name:
            origin = exc.src_uid
            src_uid = list(origin) if origin is not None else here
            src_name = inner.src_type_name or inner.type_name
            src_module = inner.src_type_module if inner.src_type_name else inner.type_module
            path = [list(p) for p in exc.relay_path]
    if here is not None:
        path.append(here)
    return Error(
        cid=cid,
        type_name=exc_type.__name__,
        message=prefix + text,
        traceback=tb,
        src_uid=src_uid,
        type_module=exc_type.__module__,
        src_type_name=src_name,
        src_type_module=src_module,
        relay_path=path,
    )


#: Boxed types that arrive as their own RemoteActorError subclass (as upstream's do).
_BOX_TYPES: dict[str, type[RemoteActorError]] = {
    cls.__name__: cls for cls in (ContextCancelled, MsgTypeError, StreamOverrun)
}


def unpack_error(msg: Error, message: str | None = None) -> RemoteActorError:
    """The :class:`RemoteActorError` to raise for an ``Error`` message (not raised)."""
    if message is None:
        src = msg.src_uid
        relay = msg.relay_path[-1] if msg.relay_path else None
        if msg.src_type_name:
            # relayed: the message already names the source error and actor
            by = f" (relayed by {relay[0]!r})" if relay and len(relay) == 2 else ""
            message = f"{msg.message}{by}"
        else:
            where = f" in actor {src[0]!r}" if src and len(src) == 2 else ""
            message = f"{msg.type_name}: {msg.message}{where}"
    box = _BOX_TYPES.get(msg.type_name, RemoteActorError)
    if box is not RemoteActorError and _resolve(msg.type_name, msg.type_module) is not box:
        box = RemoteActorError
    return box(message, ipc_msg=msg)
