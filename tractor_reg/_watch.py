"""Watching the registry: a stream of changes delivered to a trio task."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

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


async def watch(
    name: str | None = None,
    *,
    since: int | None = None,
    registry_addrs: list[AddressLike] | None = None,
    poll_timeout: float = 30.0,
) -> AsyncIterator[Change]:
    """Yield registry changes as they happen (``async for change in watch(): ...``).

    ``name`` keeps only the changes of actors with that name. ``since`` resumes after a
    revision (e.g. the ``revision`` of a change you already handled, or of a snapshot);
    by default only changes made from now on are delivered. Changes arrive in revision
    order; each has ``kind`` (``registered``, ``updated``, ``unregistered``,
    ``expired``), ``name``, ``uuid``, ``addrs`` and ``revision``.

    Registrars are tried in order: if the one in use goes away, the watch continues at
    the next from the same revision (registrars sharing a store share revisions).
    Raises :class:`ChangesExpired` if ``since`` is older than the retained history, and
    :class:`RegistryUnavailable` when no registrar answers.
    """
    actor = current_actor()
    regs = [wrap_address(a) for a in registry_addrs] if registry_addrs else list(actor.reg_addrs)
    after = since
    while True:
        answer = None
        errors: list[str] = []
        for reg in regs:
            try:
                portal = await actor.registry_portal(reg)
                answer = await portal.run_from_ns(
                    "self", "watch_changes", since=after, name=name, timeout=poll_timeout
                )
            except RemoteActorError as exc:
                if exc.type_name == "ChangesExpired":
                    raise ChangesExpired(exc.remote_message) from exc
                raise
            except CONNECT_ERRORS as exc:
                errors.append(f"{reg}: {exc}")
                continue
            break
        if answer is None:
            raise RegistryUnavailable("no registrar reachable for watching: " + "; ".join(errors))
        after = int(answer["revision"])
        for doc in answer["changes"]:
            yield _change(doc)
