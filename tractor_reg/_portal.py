"""Portals: the handle through which an actor calls functions in another actor."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._exceptions import TransportClosed

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


class Portal:
    """A connection to another actor through which its functions can be called.

    ``run(fn, **kwargs)`` runs a module-level function of a module the remote actor enabled
    (``enable_modules``) and returns its result; remote exceptions arrive as
    :class:`RemoteActorError`.
    """

    def __init__(self, channel: Channel, *, actor: Actor | None = None) -> None:
        self.channel = channel
        self._actor = actor
        # Set by ActorNursery.run_in_actor: the one-shot call whose result() we report.
        self._result_waiter: Callable[[], Awaitable[Any]] | None = None

    def __repr__(self) -> str:
        return f"<Portal to {self.channel!r}>"

    async def run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Run ``fn(**kwargs)`` in the remote actor and return the result."""
        ns, name = _func_ref(fn)
        return await self.channel.call(ns, name, kwargs)

    async def run_from_ns(self, namespace_path: str, function_name: str, **kwargs: Any) -> Any:
        """Run ``namespace_path.function_name(**kwargs)`` remotely.

        ``namespace_path`` is a module the remote actor enabled, or ``"self"`` for the
        endpoints the actor's type exposes (a registrar's ``find_actor`` and friends).
        """
        return await self.channel.call(namespace_path, function_name, kwargs)

    async def result(self) -> Any:
        """The return value of the function a ``run_in_actor`` child ran (waits for it)."""
        if self._result_waiter is None:
            raise RuntimeError(
                "result() is only available on portals returned by ActorNursery.run_in_actor()"
            )
        return await self._result_waiter()

    async def cancel_actor(self, timeout: float = 3.0) -> bool:
        """Ask the remote actor to shut down; ``True`` if it acknowledged in time.

        A peer that is already gone counts as cancelled.
        """
        if self.channel.closed:
            return True
        with trio.move_on_after(timeout):
            try:
                await self.channel.call("self", "cancel", {})
            except TransportClosed:
                return True
            return True
        return False

    async def aclose(self) -> None:
        await self.channel.aclose()


class _LocalChannel:
    """What ``LocalPortal.channel`` exposes: the local actor's own identity."""

    def __init__(self, actor: Actor) -> None:
        self._actor = actor
        self.raddr = None
        self.closed = False

    @property
    def aid(self) -> Aid:
        return self._actor.aid


class LocalPortal:
    """The :class:`Portal` call surface for an actor talking to itself (no IPC)."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.channel = _LocalChannel(actor)

    def __repr__(self) -> str:
        return f"<LocalPortal to {self.actor.name!r}>"

    async def run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        ns, name = _func_ref(fn)
        return await self.run_from_ns(ns, name, **kwargs)

    async def run_from_ns(self, namespace_path: str, function_name: str, **kwargs: Any) -> Any:
        func = self.actor.resolve_rpc(namespace_path, function_name)
        result = func(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def result(self) -> Any:
        raise RuntimeError("a LocalPortal has no run_in_actor result")

    async def cancel_actor(self, timeout: float = 3.0) -> bool:
        self.actor.cancel_soon()
        return True
