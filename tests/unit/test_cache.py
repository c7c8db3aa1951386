"""TtlCache: entries expire, a cached None is a hit, the size stays bounded."""

from __future__ import annotations

import time

from laoke.kit.cache import TtlCache


def test_entries_expire_and_none_is_a_real_answer() -> None:
    cache: TtlCache[str | None] = TtlCache(0.05)
    assert cache.get("k") == (False, None)
    cache.put("k", None)
    assert cache.get("k") == (True, None)
    cache.put("v", "x")
    assert cache.get("v") == (True, "x")
    time.sleep(0.06)
    assert cache.get("v") == (False, None)


def test_forget_and_bounded_size() -> None:
    cache: TtlCache[int] = TtlCache(60, max_entries=3)
    for i in range(3):
        cache.put(str(i), i)
    cache.forget("0")
    assert cache.get("0") == (False, None)
    cache.put("3", 3)
    cache.put("4", 4)  # full: the cache starts over rather than growing
    assert cache.get("1") == (False, None) and cache.get("4") == (True, 4)
