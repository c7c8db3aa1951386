"""Small per-process caches.

- `TtlCache`: entries that expire, for lookups made on every request (API keys, webhook secrets, shop
  settings) that change rarely and may lag by a few seconds on other replicas.
- `SlowAnswers`: stale-while-revalidate for answers that scan a whole shop (dashboard counts over a
  million customers), exact while they are cheap to compute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import structlog

from laoke.kit import clock

V = TypeVar("V")
log = structlog.get_logger()


class TtlCache(Generic[V]):
    def __init__(self, seconds: float, max_entries: int = 100_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> tuple[bool, V | None]:
        """(hit, value); a cached None is a real answer ("no such key"), told apart by `hit`."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, value: V) -> V:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude but bounded: a refill costs one lookup per key
        self._entries[key] = (time.monotonic() + self.seconds, value)
        return value

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


@dataclass(frozen=True)
class Computed(Generic[V]):
    value: V
    computed_at: datetime  # when the computation started: the data is at least this fresh
    started: float  # time.monotonic() then
    seconds: float  # what it cost


class SlowAnswers(Generic[V]):
    """Answers computed by scanning a whole shop, served without making every caller wait for the scan.

    While an answer is cheap (its last computation took under `live_below` seconds, as it does for all
    but the largest shops) every call computes it afresh, so it is always exact. Once it is slow, a
    call gets the last answer at once while it is under `max_age` seconds old; when it is over
    `refresh_after` old, one computation per key starts in the background to replace it. A call that
    finds nothing, or an answer over `max_age`, waits for a computation (shared with any other caller
    of that key). Callers are told `computed_at`, so they can say how old the figures are. Only slow
    answers are kept (at most `max_entries`), so questions about small shops cost no memory.
    """

    def __init__(
        self, *, live_below: float, refresh_after: float, max_age: float, max_entries: int = 1_000
    ) -> None:
        self.live_below = live_below
        self.refresh_after = refresh_after
        self.max_age = max_age
        self.max_entries = max_entries
        self._answers: dict[str, Computed[V]] = {}
        self._running: dict[str, asyncio.Task[Computed[V]]] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[V]]) -> Computed[V]:
        answer = self._answers.get(key)
        if answer is None or answer.seconds < self.live_below:
            return await self._compute(key, compute)  # cheap (or unknown): exact, not shared
        age = time.monotonic() - answer.started
        if age < self.max_age:
            if age >= self.refresh_after:
                self._start(key, compute)
            return answer
        # shield: a caller that goes away must not cancel the computation others wait for
        return await asyncio.shield(self._start(key, compute))

    def _start(self, key: str, compute: Callable[[], Awaitable[V]]) -> asyncio.Task[Computed[V]]:
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._compute(key, compute), name=f"slow-answer-{key}")
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: str, task: asyncio.Task[Computed[V]]) -> None:
        self._running.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            # The last answer stays until max_age; a waiting caller gets the error itself.
            log.warning("slow_answer_failed", key=key, error=repr(task.exception()))

    async def _compute(self, key: str, compute: Callable[[], Awaitable[V]]) -> Computed[V]:
        started, at = time.monotonic(), clock.now()
        value = await compute()
        answer = Computed(value, at, started, time.monotonic() - started)
        current = self._answers.get(key)
        if answer.seconds < self.live_below:
            # Cheap: nothing to keep (the next call counts afresh); only slow answers take memory.
            if current is not None and current.started <= started:
                del self._answers[key]
        elif current is None or current.started <= started:  # an older computation never wins
            if len(self._answers) >= self.max_entries:
                self._answers.clear()
            self._answers[key] = answer
        return answer
