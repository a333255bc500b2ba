"""Sliding-window limits, pure functions of the time given: easy to test, no sleeping inside."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Hashable
from datetime import datetime, timedelta


class SlidingWindow:
    """At most `limit` events per `window` for each key."""

    def __init__(self, limit: int, window: timedelta) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[Hashable, deque[datetime]] = defaultdict(deque)

    def _trim(self, key: Hashable, now: datetime) -> deque[datetime]:
        q = self._events[key]
        while q and now - q[0] >= self.window:
            q.popleft()
        return q

    def allowed(self, key: Hashable, now: datetime) -> bool:
        return len(self._trim(key, now)) < self.limit

    def hit(self, key: Hashable, now: datetime) -> bool:
        """Count an event if there is room; return whether it was allowed."""
        q = self._trim(key, now)
        if len(q) >= self.limit:
            return False
        q.append(now)
        return True

    def wait(self, key: Hashable, now: datetime) -> float:
        """Seconds until one more event would be allowed (0 when it is now)."""
        q = self._trim(key, now)
        if len(q) < self.limit:
            return 0.0
        return max(0.0, (q[0] + self.window - now).total_seconds())
