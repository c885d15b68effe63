"""How often the app draws while a reply streams."""

from __future__ import annotations

import time
from collections.abc import Callable


class FramePacer:
    """Caps the UI thread's share of a core while a reply streams.

    Each frame that takes in text costs a layout pass and a repaint of the whole screen (the
    conversation scrolls), from ~10 ms on a fast machine to ~80 ms on a slow one. After a frame
    that cost `c` seconds of UI-thread CPU, the next waits at least `c / share`: a fast machine
    draws at the full rate, a slow one draws less often instead of falling behind, and keys and
    scrolling always find the UI thread free at least `1 - share` of the time.
    """

    def __init__(
        self,
        min_interval: float,
        share: float = 0.5,
        max_interval: float = 0.5,
        cpu: Callable[[], float] = time.thread_time,
        wall: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.min_interval = min_interval
        self.share = share
        self.max_interval = max_interval
        self._cpu = cpu
        self._wall = wall
        self._last: tuple[float, float] | None = None
        self.frames = 0

    def reset(self) -> None:
        self._last = None
        self.frames = 0

    def ready(self, force: bool = False) -> bool:
        """True when a frame may be drawn now (and counts it); `force` draws one regardless."""
        wall, cpu = self._wall(), self._cpu()
        if self._last is not None and not force:
            last_wall, last_cpu = self._last
            wait = min(self.max_interval, max(self.min_interval, (cpu - last_cpu) / self.share))
            if wall - last_wall < wait:
                return False
        self._last = (wall, cpu)
        self.frames += 1
        return True
