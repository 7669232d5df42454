"""Waiting, in one place: the retry policy every Graph request shares, and the write pacer.

Every retry is the target's own (the SDK's RetryHandler is off): it cannot see throttled items
inside a ``$batch``, cannot parse a decimal ``Retry-After``, and sleeps where tests cannot reach.
The three kinds of retry — a request refused or lost as a whole, a batch item throttled, a member
add meeting a group Entra has not replicated yet — ask one :class:`RetryPolicy` whether to try
again and how long to wait, and wait through its ``sleep``; the :class:`WritePacer` waits through
the same ``sleep`` by the same ``clock``. Tests give the target a clock that jumps instead.
"""

from __future__ import annotations

import email.utils
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from provisioner.targets.entra_settings import WriteQuota

T = TypeVar("T")

RETRIED = frozenset((429, 503, 504))
"""Statuses that mean "not now": throttled, busy, or the gateway gave up (the work may be done)."""


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header: a number (Graph sends decimals inside batches) or
    an HTTP date."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def backoff(attempt: int) -> float:
    """Without a Retry-After: 1, 2, 4 … seconds, at most a minute."""
    return float(min(60, 2 ** (attempt - 1)))


@dataclass
class Stats:
    """What the run sent: for the log and the benchmark."""

    http_requests: int = 0
    batches: int = 0
    items: int = 0
    writes: int = 0
    throttled: int = 0
    retries: int = 0


@dataclass
class RetryPolicy:
    """How often a request is tried, how long to wait between tries, and how a run waits."""

    max_attempts: int
    sleep: Callable[[float], Awaitable[None]]
    """How a run waits (for a Retry-After, the write quota, replication)."""
    clock: Callable[[], float]
    """The clock of the write quota."""
    stats: Stats = field(default_factory=Stats)

    def gives_up(self, attempt: int) -> bool:
        """True when *attempt* tries are all this policy allows."""
        return attempt >= self.max_attempts

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None) -> float:
        """How long to wait after *attempt* tries: Graph's ``Retry-After``, or backing off."""
        return retry_after(headers or {}) or backoff(attempt)

    async def pause(self, seconds: float, retries: int = 1) -> None:
        """Wait before *retries* requests are sent again."""
        self.stats.retries += retries
        await self.sleep(seconds)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        again: Callable[[T, int], float | None],
    ) -> T:
        """Call *attempt* until *again* (given its outcome and the number of tries) answers no
        delay, or the tries are used up; the last outcome is returned."""
        tries = 0
        while True:
            tries += 1
            outcome = await attempt()
            if self.gives_up(tries):
                return outcome
            wait = again(outcome, tries)
            if wait is None:
                return outcome
            await self.pause(wait)


class WritePacer:
    """Keeps the writes of any window of ``quota.seconds`` at or below ``quota.writes``: Graph
    counts writes per app and tenant in such a sliding window, and answers 429 beyond it."""

    def __init__(self, quota: WriteQuota, policy: RetryPolicy) -> None:
        self.quota = quota
        self.policy = policy
        self.waited = 0.0
        self._sent: deque[float] = deque()

    async def take(self, writes: int) -> None:
        limit, window = self.quota.writes, self.quota.seconds
        writes = min(writes, limit)
        while True:
            now = self.policy.clock()
            while self._sent and self._sent[0] <= now - window:
                self._sent.popleft()
            over = len(self._sent) + writes - limit
            if over <= 0:
                break
            wait = self._sent[over - 1] + window - now  # until enough older writes leave the window
            self.waited += wait
            await self.policy.sleep(max(wait, 0.001))
        self._sent.extend([now] * writes)
