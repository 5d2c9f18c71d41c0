"""A byte budget shared by an actor's channels: what all of them may buffer at once.

A channel reserves a large frame's length from the budget before reading its payload and
gives it back once the frame is decoded (or the channel closes). While the budget is
spent, further large frames wait (their channels are not read) in arrival order: the
kernel makes their senders wait instead of this process's memory growing.
"""

from __future__ import annotations

from collections import deque

import trio

#: Default total of frame payloads an actor buffers at once across all its channels.
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024


class InputBudget:
    """``total`` bytes handed out first come, first served."""

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError(f"a buffered-bytes budget must be > 0, got {total}")
        self.total = total
        self.free = total
        self._waiting: deque[tuple[int, trio.Event]] = deque()

    async def reserve(self, size: int) -> None:
        """Take ``size`` bytes, waiting while they are not free. Atomic: a cancelled
        reservation holds nothing."""
        if size > self.total:
            raise ValueError(f"cannot reserve {size} bytes of a {self.total}-byte budget")
        if not self._waiting and self.free >= size:
            self.free -= size
            return
        granted = trio.Event()
        entry = (size, granted)
        self._waiting.append(entry)
        try:
            await granted.wait()
        except trio.Cancelled:
            if granted.is_set():
                self.release(size)  # granted in the same tick the wait was cancelled
            else:
                self._waiting.remove(entry)
                self._grant()  # the head may have changed
            raise

    def release(self, size: int) -> None:
        self.free += size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            size, granted = self._waiting.popleft()
            self.free -= size
            granted.set()
