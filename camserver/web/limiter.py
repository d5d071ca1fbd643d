"""One limiter for every credential check: wrong logins, wrong basic-auth passwords and wrong
tokens all count against the client address they came from, on every route.

After `max_failures` failures within `window_s` an address is locked for what is left of the
window (measured from the oldest of those failures): every credential it presents, the right one
included, gets 429 with Retry-After until then. Failures during a lock are not checked, so they
neither count nor lengthen it.

Memory is bounded (`max_tracked` addresses) without ever forgetting a lock: a full table first
drops what has expired, then the address whose last failure is oldest among the unlocked ones;
when every tracked address is locked, new addresses share one overflow entry, which locks like
any other. So failures from any number of other addresses never lift an address's lock.
All times are on the monotonic clock: a wall-clock step neither lifts nor lengthens a lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Callable

OVERFLOW = "(overflow)"  # the entry that addresses share when the table is full of locks


class GuessLimiter:
    """Failures per client address, and the locks they lead to.

    Args:
        max_failures: failures within `window_s` that lock an address.
        window_s: the window, and so the longest lock.
        max_tracked: addresses kept at most (locked and unlocked together, the overflow entry aside).
        clock: monotonic seconds.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 60.0, max_tracked: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_tracked = max_tracked
        self.clock = clock
        # unlocked addresses by their last failure, oldest first; locked ones by lock end, soonest first
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: OrderedDict[str, float] = OrderedDict()
        self.failures = 0  # counted failures, for /healthz and tests
        self.refused = 0  # credential checks answered 429
        self.overflowed = 0  # failures counted in the overflow entry

    def __len__(self) -> int:
        """Addresses tracked, the overflow entry aside."""
        return len(self._recent) + len(self._locked) - (OVERFLOW in self._recent) - (OVERFLOW in self._locked)

    def _expire(self, now: float) -> None:
        while self._locked:
            address, until = next(iter(self._locked.items()))
            if until > now:
                break
            del self._locked[address]
        while self._recent:
            address, times = next(iter(self._recent.items()))
            if now - times[-1] <= self.window_s:
                break
            del self._recent[address]

    def locked_for(self, address: str) -> float:
        """Seconds `address` must still wait before a credential is checked again (0: not locked)."""
        now = self.clock()
        until = self._locked.get(address)
        if until is None and address not in self._recent and len(self) >= self.max_tracked:
            until = self._locked.get(OVERFLOW)  # an address with no entry of its own may be in the overflow
        if until is None:
            return 0.0
        if until <= now:
            self._expire(now)
            return 0.0
        return until - now

    def refuse(self) -> None:
        """Count a check answered 429."""
        self.refused += 1

    def failed(self, address: str) -> None:
        """Count one wrong credential from `address` (a locked address is never checked, so never counted)."""
        now = self.clock()
        self.failures += 1
        if address in self._locked:
            return
        if address not in self._recent:
            if len(self) >= self.max_tracked:
                self._expire(now)
            if len(self) >= self.max_tracked and len(self._recent) > (OVERFLOW in self._recent):
                # the unlocked address that failed longest ago (never the overflow entry itself)
                oldest = next(a for a in self._recent if a != OVERFLOW)
                del self._recent[oldest]
            if len(self) >= self.max_tracked:
                address, self.overflowed = OVERFLOW, self.overflowed + 1
                if OVERFLOW in self._locked:
                    return
        times = self._recent.setdefault(address, deque(maxlen=self.max_failures))
        times.append(now)
        self._recent.move_to_end(address)
        while times and now - times[0] > self.window_s:
            times.popleft()
        if len(times) >= self.max_failures:
            del self._recent[address]
            self._locked[address] = times[0] + self.window_s
            self._locked.move_to_end(address)

    def figures(self) -> dict[str, int]:
        """Counters for /healthz."""
        return {"failures": self.failures, "refused": self.refused, "locked": len(self._locked),
                "tracked": len(self), "overflowed": self.overflowed}
