"""Code shared by the programs of the multi-program example.

``service.py`` enables this module in the ``quote_svc`` actor it starts, and ``client.py``
imports it to name the function it calls there. Neither program refers to the other's
address: they meet through the standalone registrar.
"""

from __future__ import annotations

import os

import tractor_reg as tractor

SERVICE = "quote_svc"
ENV_REGISTRY = "TRACTOR_REG_REGISTRY_ADDRS"
DEFAULT_REGISTRY = "tcp://127.0.0.1:1616"

_PRICES = {"ACME": 101.25, "INITECH": 12.5, "GLOBEX": 88.0}


def registry_from(argv: list[str]) -> tractor.Address:
    """The registrar's address: ``argv[1]``, else the env variable, else the default."""
    if len(argv) > 1:
        text = argv[1]
    else:
        # The env variable may list several addresses; these programs use the first.
        text = os.environ.get(ENV_REGISTRY, "").split(",")[0].strip() or DEFAULT_REGISTRY
    return tractor.parse_address(text)


async def get_quote(sym: str) -> dict[str, object]:
    """Runs in the ``quote_svc`` actor."""
    price = _PRICES.get(sym.upper())
    if price is None:
        raise KeyError(f"no such symbol: {sym!r}")
    me = tractor.current_actor()
    return {"sym": sym.upper(), "price": price, "served_by": me.name, "pid": os.getpid()}
