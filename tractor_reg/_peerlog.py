"""Rate-limited warnings about misbehaving peers.

A peer in a connect loop, or one flooding refused calls, must not write megabytes of log:
each peer (keyed by host) gets at most one WARNING per interval; what was held back in
between is counted and reported with the next one (and logged at DEBUG meanwhile).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

#: Default seconds between two warnings about the same peer host.
DEFAULT_PEER_LOG_INTERVAL = 10.0
#: Peer hosts remembered at once (the oldest is forgotten first).
_MAX_PEERS = 4096


class PeerWarnings:
    """One WARNING per peer key per ``interval`` seconds, with a count of the rest."""

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_PEER_LOG_INTERVAL):
        if interval < 0:
            raise ValueError(f"peer log interval must be >= 0, got {interval}")
        self.logger = logger
        self.interval = interval
        # peer -> (time of the last warning, warnings held back since)
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def warn(self, peer: str, fmt: str, *args: object) -> None:
        now = time.monotonic()
        last = self._seen.get(peer)
        if last is not None and now - last[0] < self.interval:
            self._seen[peer] = (last[0], last[1] + 1)
            self.logger.debug(fmt, *args)
            return
        held_back = last[1] if last is not None else 0
        if held_back:
            fmt += " (%d more warning(s) about %s held back in the last %gs)"
            args = (*args, held_back, peer, self.interval)
        self.logger.warning(fmt, *args)
        self._seen[peer] = (now, 0)
        self._seen.move_to_end(peer)
        while len(self._seen) > _MAX_PEERS:
            self._seen.popitem(last=False)
