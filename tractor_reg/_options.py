"""Checks of the runtime keywords shared by ``open_root_actor`` and the actor nursery.

Upstream ``tractor`` programs pass keywords for features tractor_reg leaves out or spells
differently; each is accepted, translated or refused here, once, with a clear message.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._addr import TRANSPORTS, Address, AddressLike, is_address_pair, wrap_address
from ._exceptions import InvalidArgument
from ._nongoals import refuse

#: Spawn methods upstream accepts; tractor_reg always starts a fresh interpreter per
#: child (``python -m tractor_reg._child``), which is upstream's ``'trio'`` method.
START_METHODS = ("trio",)


def check_start_method(start_method: str | None) -> None:
    if start_method is None or start_method in START_METHODS:
        return
    raise InvalidArgument(
        f"start_method={start_method!r} is not supported: tractor_reg starts every child "
        "actor as a fresh Python process, upstream's 'trio' method (pass 'trio' or None)"
    )


def check_non_goal_flags(
    *,
    debug_mode: bool | None = False,
    infect_asyncio: bool = False,
    maybe_enable_greenback: bool = False,
    enable_stack_on_sig: bool = False,
) -> None:
    """Refuse, by name, the upstream switches that turn on a non-goal."""
    if debug_mode:
        refuse("debug_mode=True", "the debugger")
    if maybe_enable_greenback:
        refuse("maybe_enable_greenback=True", "the debugger")
    if enable_stack_on_sig:
        refuse("enable_stack_on_sig=True", "the debugger")
    if infect_asyncio:
        refuse("infect_asyncio=True", "asyncio infection")


def merge_bind_addrs(
    accept_addrs: Sequence[AddressLike] | None, tpt_bind_addrs: Sequence[AddressLike] | None
) -> list[Address] | None:
    """``accept_addrs`` and upstream's ``tpt_bind_addrs``: two names for one setting."""
    if accept_addrs is not None and tpt_bind_addrs is not None:
        raise TypeError("pass accept_addrs or its upstream name tpt_bind_addrs, not both")
    given = accept_addrs if accept_addrs is not None else tpt_bind_addrs
    if given is None:
        return None
    if isinstance(given, str) or (isinstance(given, tuple) and is_address_pair(given)):
        raise TypeError("bind addresses must be a list of addresses, e.g. [('127.0.0.1', 0)]")
    return [wrap_address(a) for a in given]


def module_list(*given: Sequence[str] | None, what: str = "enable_modules") -> list[str]:
    """Module names from one or more lists (``enable_modules`` + ``rpc_module_paths``).

    A bare ``str`` is a ``TypeError``: iterating it would enable one module per letter.
    """
    modules: list[str] = []
    for names in given:
        if isinstance(names, str):
            raise TypeError(f"{what} must be a list of module names, not a str")
        modules.extend(names or ())
    return modules


def transport_list(given: Sequence[str], what: str = "enable_transports") -> list[str]:
    """Known transport names, deduplicated in order; at least one."""
    if isinstance(given, str):
        raise TypeError(f"{what} must be a list of transport names, not a str")
    transports = list(dict.fromkeys(given))
    for transport in transports:
        if transport not in TRANSPORTS:
            raise InvalidArgument(f"unknown transport {transport!r}; expected one of {TRANSPORTS}")
    if not transports:
        raise InvalidArgument(f"{what} must name at least one transport")
    return transports
