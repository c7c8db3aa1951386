"""A small per-process cache whose entries expire: for lookups made on every request (API keys,
webhook secrets, shop settings) that change rarely and may lag by a few seconds on other replicas."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

V = TypeVar("V")


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
