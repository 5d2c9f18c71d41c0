"""Upstream's ``tractor.discovery`` import path for the multiaddr helpers.

``from tractor_reg.discovery import mk_maddr, parse_maddr, parse_endpoints`` works as
``from tractor.discovery import ...`` does; the same names are exported from
:mod:`tractor_reg` itself. Discovery calls (``find_actor`` and friends) live at the top level.
"""

from __future__ import annotations

from ._multiaddr import (
    EndpointsTable,
    ParsedEndpoints,
    mk_maddr,
    parse_endpoints,
    parse_maddr,
)

__all__ = ["EndpointsTable", "ParsedEndpoints", "mk_maddr", "parse_endpoints", "parse_maddr"]
