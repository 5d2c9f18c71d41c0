"""The exception hierarchy.

Every error this package raises on purpose derives from :class:`TractorRegError`.
Errors that upstream ``tractor`` code expects as builtin types (``RuntimeError`` for boot
rules, ``ValueError`` for bad arguments) are raised as subclasses of *both* our root and
the builtin, so ``except RuntimeError`` keeps working and ``except TractorRegError``
catches everything of ours.
"""

from __future__ import annotations


class TractorRegError(Exception):
    """Root of every exception raised by ``tractor_reg``."""


# -- wire protocol -------------------------------------------------------------------------


class ProtocolError(TractorRegError):
    """A peer violated the wire protocol (garbage, oversized or unexpected frame).

    Only the offending channel is closed; the actor keeps serving everyone else.
    """


class FrameTooLarge(ProtocolError):
    """A frame's declared length exceeds the configured maximum frame size."""


class HandshakeError(ProtocolError):
    """The identity handshake failed or did not complete within its deadline."""


class AuthenticationError(HandshakeError):
    """The peer could not prove the shared secret, or demanded one this side lacks."""

    def __init__(self, message: str, peer_is_registrar: bool = False) -> None:
        super().__init__(message)
        self.peer_is_registrar = peer_is_registrar


class TransportClosed(TractorRegError):
    """The channel's underlying connection closed (peer gone, or closed locally)."""


# -- addresses -----------------------------------------------------------------------------


class AddressError(TractorRegError, ValueError):
    """A value is not a valid TCP or UDS address (tuple or ``tcp://``/``uds://`` string)."""


# -- runtime -------------------------------------------------------------------------------


class RuntimeBootError(TractorRegError, RuntimeError):
    """The root actor could not boot (registry address occupied, nested root, ...)."""


class NoRuntime(TractorRegError, RuntimeError):
    """An API that needs a running actor was called outside of one."""


class ActorNotFound(TractorRegError, LookupError):
    """``find_actor(..., raise_on_none=True)`` found no actor registered under the name."""


class RegistryTimeout(TractorRegError, TimeoutError):
    """A registrar accepted the call but did not answer in time (stopped, overloaded or
    a half-open connection); callers fail over to the next registry address."""


class RegistryUnavailable(TractorRegError, ConnectionError):
    """No registrar could be reached at any of the configured registry addresses."""


class RemoteActorError(TractorRegError):
    """An exception raised inside another actor, boxed for delivery to this one.

    Attributes:
        type_name: the qualified name of the remote exception type (e.g. ``"ValueError"``).
        remote_message: ``str()`` of the remote exception.
        remote_traceback: the formatted remote traceback text.
        src_uid: ``(name, uuid)`` of the actor it came from, when known.
    """

    def __init__(
        self,
        type_name: str,
        message: str,
        traceback: str = "",
        src_uid: tuple[str, str] | None = None,
    ) -> None:
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = traceback
        self.src_uid = src_uid
        where = f" in actor {src_uid[0]!r}" if src_uid else ""
        super().__init__(f"{type_name}: {message}{where}")

    def __str__(self) -> str:
        text = str(self.args[0])
        if self.remote_traceback:
            text += "\n\n--- remote traceback ---\n" + self.remote_traceback.rstrip()
        return text

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.type_name, self.remote_message, self.remote_traceback, self.src_uid),
        )


class ActorCrashed(RemoteActorError):
    """A child actor's process exited on its own (crash, signal) instead of being cancelled."""


# -- registry / backends -------------------------------------------------------------------


class RegistryError(TractorRegError):
    """Base of errors raised by the registrar or a storage backend."""


class InvalidRequest(RegistryError, ValueError):
    """A registry call carried an argument of the wrong type or shape."""


class PermissionDenied(RegistryError, PermissionError):
    """The caller may not do this (e.g. unregister a uid that is not its own)."""


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


class RPCNotAllowed(PermissionDenied):
    """A call named a namespace or function the actor does not expose."""


class ActorTooSlowError(TractorRegError, TimeoutError):
    """A peer did not acknowledge a request (``cancel_actor(raise_on_timeout=True)``) in time."""


class InvalidArgument(TractorRegError, ValueError):
    """A runtime keyword has a value this package cannot use (a start method, a transport)."""
