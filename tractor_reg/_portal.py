"""Portals: the handle through which an actor calls functions in another actor."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._exceptions import ActorTooSlowError, NoResult, TransportClosed
from ._nongoals import refuse

log = logging.getLogger("tractor_reg.portal")

if TYPE_CHECKING:
    from ._actor import Actor
    from ._ipc import Aid, Channel


def _func_ref(fn: Callable[..., Any]) -> tuple[str, str]:
    """``(module, name)`` of a module-level function; anything else is refused."""
    if not callable(fn):
        raise TypeError(f"{fn!r} is not callable")
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__name__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not name or qualname != name:
        raise TypeError(
            f"{fn!r} must be a module-level function (nested functions, lambdas and "
            "methods cannot be called in another actor)"
        )
    return module, name


def _target(func: Callable[..., Any] | str, fn_name: str | None) -> tuple[str, str]:
    """``(namespace, function)`` for ``run(fn)`` or the deprecated ``run('mod.path', 'fn')``."""
    if isinstance(func, str):
        if not isinstance(fn_name, str) or not fn_name:
            raise TypeError(
                "Portal.run('module.path', 'function') needs the function name as a str "
                "second argument"
            )
        warnings.warn(
            "Portal.run(namespace, function_name) is deprecated: pass the function itself, "
            "or call Portal.run_from_ns() to name it",
            DeprecationWarning,
            stacklevel=3,
        )
        return func, fn_name
    if fn_name is not None:
        raise TypeError("Portal.run(fn, ...) takes the function's arguments as keywords only")
    return _func_ref(func)


class Portal:
    """A connection to another actor through which its functions can be called.

    ``run(fn, **kwargs)`` runs a module-level function of a module the remote actor enabled
    (``enable_modules``) and returns its result; remote exceptions arrive as
    :class:`RemoteActorError`.
    """

    #: Seconds :meth:`cancel_actor` waits for the acknowledgement by default.
    cancel_timeout: float = 3.0
    #: The channel to the remote actor (set in __init__).
    channel: Channel

    def __init__(self, channel: Channel, *, actor: Actor | None = None) -> None:
        self.channel = channel
        self._actor = actor
        # Set by ActorNursery.run_in_actor: the one-shot call whose result() we report.
        self._result_waiter: Callable[[], Awaitable[Any]] | None = None

    def __repr__(self) -> str:
        return f"<Portal to {self.channel!r}>"

    @property
    def chan(self) -> Channel:
        """The channel to the remote actor (upstream's current name for :attr:`channel`)."""
        return self.channel

    @property
    def actor(self) -> Actor | None:
        """The local actor this portal belongs to."""
        return self._actor

    async def run(
        self, func: Callable[..., Any] | str, fn_name: str | None = None, **kwargs: Any
    ) -> Any:
        """Run ``func(**kwargs)`` in the remote actor and return the result.

        ``func`` is a module-level function of a module the remote actor enabled. The
        older form ``run('module.path', 'function', **kwargs)`` still works with a
        ``DeprecationWarning``, as upstream's does.
        """
        ns, name = _target(func, fn_name)
        return await self.channel.call(ns, name, kwargs)

    async def run_from_ns(self, namespace_path: str, function_name: str, **kwargs: Any) -> Any:
        """Run ``namespace_path.function_name(**kwargs)`` remotely.

        ``namespace_path`` is a module the remote actor enabled, or ``"self"`` for the
        endpoints the actor's type exposes (a registrar's ``find_actor`` and friends).
        """
        return await self.channel.call(namespace_path, function_name, kwargs)

    async def wait_for_result(self, hide_tb: bool = True) -> Any:
        """The return value of the function a ``run_in_actor`` child ran (waits for it).

        Raises the :class:`RemoteActorError` the function raised. On a portal that
        ``run_in_actor()`` did not return there is no such result: as upstream, a
        warning is logged and the :class:`NoResult` type itself is returned. ``hide_tb``
        is accepted for upstream's signature.
        """
        if self._result_waiter is None:
            log.warning(
                "%r will not deliver a final result: only portals returned by "
                "ActorNursery.run_in_actor() have one",
                self,
            )
            return NoResult
        return await self._result_waiter()

    async def result(self) -> Any:
        """Upstream's older name for :meth:`wait_for_result`."""
        return await self.wait_for_result()

    async def cancel_actor(
        self, timeout: float | None = None, raise_on_timeout: bool = False
    ) -> bool:
        """Ask the remote actor to shut down; ``True`` if it acknowledged in time.

        A peer that is already gone counts as cancelled. ``timeout`` defaults to
        :attr:`cancel_timeout`; past it the answer is ``False``, or with
        ``raise_on_timeout=True`` an ``ActorTooSlowError``. Only the actor's parent may
        ask; from anyone else the call raises :class:`RemoteActorError` (``RPCNotAllowed``).
        """
        if self.channel.closed:
            return True
        limit = self.cancel_timeout if timeout is None else timeout
        with trio.move_on_after(limit):
            try:
                # No teardown budget: ``timeout`` bounds the acknowledgement only (the
                # nursery, which escalates to signals, passes its own budget).
                await self.channel.call("self", "cancel", {})
            except TransportClosed:
                return True
            return True
        if raise_on_timeout:
            raise ActorTooSlowError(
                f"actor {self.channel.aid.name!r} did not acknowledge cancel_actor() "
                f"within {limit:g}s"
            )
        return False

    # Plain functions, not coroutines: upstream code writes ``async with
    # portal.open_context(...)``, which must fail here by name, at once.
    def open_context(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        refuse("Portal.open_context()", "streaming and contexts")

    def open_stream_from(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        refuse("Portal.open_stream_from()", "streaming and contexts")

    async def aclose(self) -> None:
        await self.channel.aclose()


class _LocalChannel:
    """What ``LocalPortal.channel`` exposes: the local actor's own identity."""

    def __init__(self, actor: Actor) -> None:
        self._actor = actor
        self.raddr = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<local channel of {self._actor.name!r} (this actor itself)>"

    @property
    def aid(self) -> Aid:
        return self._actor.aid

    @property
    def uid(self) -> tuple[str, str]:
        return self._actor.uid

    def connected(self) -> bool:
        return True


class LocalPortal:
    """The :class:`Portal` call surface for an actor talking to itself (no IPC)."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.channel = _LocalChannel(actor)

    def __repr__(self) -> str:
        return f"<LocalPortal to {self.actor.name!r}>"

    @property
    def chan(self) -> _LocalChannel:
        return self.channel

    async def run(
        self, func: Callable[..., Any] | str, fn_name: str | None = None, **kwargs: Any
    ) -> Any:
        ns, name = _target(func, fn_name)
        return await self.run_from_ns(ns, name, **kwargs)

    async def run_from_ns(self, namespace_path: str, function_name: str, **kwargs: Any) -> Any:
        func = self.actor.resolve_rpc(namespace_path, function_name)
        result = func(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def wait_for_result(self, hide_tb: bool = True) -> Any:
        log.warning("%r will not deliver a final result (it is this actor itself)", self)
        return NoResult

    async def result(self) -> Any:
        return await self.wait_for_result()

    async def cancel_actor(
        self, timeout: float | None = None, raise_on_timeout: bool = False
    ) -> bool:
        self.actor.cancel_soon()
        return True
