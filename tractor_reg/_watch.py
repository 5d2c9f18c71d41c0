"""Watching the registry: a stream of changes delivered to a trio task."""

from __future__ import annotations

import logging

from ._actor import CONNECT_ERRORS
from ._addr import AddressLike, wrap_address
from ._exceptions import ChangesExpired, RegistryUnavailable, RemoteActorError
from ._state import current_actor
from .backends import Change

log = logging.getLogger("tractor_reg.watch")


def _change(doc: dict[str, object]) -> Change:
    addrs = doc.get("addrs") or []
    assert isinstance(addrs, list)
    return Change(
        kind=str(doc["kind"]),
        revision=int(doc["revision"]),  # type: ignore[call-overload]
        name=str(doc["name"]),
        uuid=str(doc["uuid"]),
        addrs=tuple((str(a[0]), a[1]) for a in addrs),
    )


class Watch:
    """An async iterator of registry changes (see :func:`watch`).

    A plain object rather than an async generator: breaking out of ``async for`` leaves
    nothing to finalise, and the position survives in :attr:`revision` (pass it as
    ``since`` to resume later).
    """

    def __init__(
        self,
        name: str | None,
        since: int | None,
        registry_addrs: list[AddressLike] | None,
        poll_timeout: float,
    ) -> None:
        actor = current_actor()
        self._actor = actor
        self._regs = (
            [wrap_address(a) for a in registry_addrs] if registry_addrs else list(actor.reg_addrs)
        )
        self.name = name
        #: Everything up to this revision has been delivered (or filtered out).
        self.revision = since
        self._poll_timeout = poll_timeout
        self._buffer: list[Change] = []

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Change:
        while not self._buffer:
            await self._fetch()
        return self._buffer.pop(0)

    async def _fetch(self) -> None:
        errors: list[str] = []
        for reg in self._regs:
            try:
                answer = await self._actor.registry_call(
                    reg,
                    "watch_changes",
                    deadline=self._poll_timeout + self._actor.call_timeout,
                    since=self.revision,
                    name=self.name,
                    timeout=self._poll_timeout,  # the endpoint's own long poll
                )
            except RemoteActorError as exc:
                if exc.type_name == "ChangesExpired":
                    raise ChangesExpired(exc.remote_message) from exc
                raise
            except CONNECT_ERRORS as exc:
                errors.append(f"{reg}: {exc}")
                continue
            self.revision = int(answer["revision"])
            self._buffer.extend(_change(doc) for doc in answer["changes"])
            return
        raise RegistryUnavailable("no registrar reachable for watching: " + "; ".join(errors))


def watch(
    name: str | None = None,
    *,
    since: int | None = None,
    registry_addrs: list[AddressLike] | None = None,
    poll_timeout: float = 30.0,
) -> Watch:
    """Registry changes as they happen: ``async for change in watch(): ...``.

    ``name`` keeps only the changes of actors with that name. ``since`` resumes after a
    revision (the ``revision`` of a change you already handled, of a ``snapshot``, or
    :attr:`Watch.revision`); by default only changes made from now on are delivered.
    Changes arrive in revision order; each has ``kind`` (``registered``, ``updated``,
    ``unregistered``, ``expired``), ``name``, ``uuid``, ``addrs`` and ``revision``.

    Registrars are tried in order: if the one in use goes away, the watch continues at
    the next from the same revision (registrars sharing a store share revisions).
    Iterating raises :class:`ChangesExpired` if ``since`` is older than the retained
    history, and :class:`RegistryUnavailable` when no registrar answers.
    """
    return Watch(name, since, registry_addrs, poll_timeout)
