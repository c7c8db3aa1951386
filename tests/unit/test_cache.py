"""TtlCache: entries expire, a cached None is a hit, the size stays bounded. SlowAnswers: exact while
cheap; once slow, served at once and replaced in the background, one computation at a time."""

from __future__ import annotations

import asyncio
import time

import pytest

from laoke.kit.cache import SlowAnswers, TtlCache


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


class Counter:
    """A computation that takes `seconds` and answers 1, 2, 3, … in turn."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        answer = self.calls
        await asyncio.sleep(self.seconds)
        return answer


async def test_cheap_answers_are_computed_afresh_every_time_and_kept_nowhere() -> None:
    answers: SlowAnswers[int] = SlowAnswers(live_below=0.05, refresh_after=60, max_age=600)
    compute = Counter(0)
    assert [(await answers.get(f"shop-{i % 2}", compute)).value for i in range(3)] == [1, 2, 3]
    assert answers._answers == {}  # a client asking many cheap questions costs no memory


async def test_a_shop_that_grew_slow_is_kept_and_one_that_became_cheap_is_dropped() -> None:
    answers: SlowAnswers[int] = SlowAnswers(live_below=0.02, refresh_after=0.01, max_age=600)
    compute = Counter(0.03)
    assert (await answers.get("shop", compute)).value == 1  # slow: kept
    compute.seconds = 0
    await asyncio.sleep(0.02)
    assert (await answers.get("shop", compute)).value == 1  # served while the recount runs
    await asyncio.sleep(0.01)
    assert (await answers.get("shop", compute)).value == 3  # the recount was cheap: live from now on


async def test_slow_answers_are_served_at_once_and_replaced_in_the_background() -> None:
    answers: SlowAnswers[int] = SlowAnswers(live_below=0.01, refresh_after=0.1, max_age=0.5)
    compute = Counter(0.03)
    first = await answers.get("shop", compute)
    assert first.value == 1 and first.seconds >= 0.03
    # Young: served without computing; other keys are apart.
    assert (await answers.get("shop", compute)).value == 1 and compute.calls == 1
    assert (await answers.get("other", compute)).value == 2
    await asyncio.sleep(0.12)
    # Over refresh_after: the old answer at once, one computation starts (not one per caller).
    stale = await asyncio.gather(*(answers.get("shop", compute) for _ in range(5)))
    assert {a.value for a in stale} == {1} and compute.calls == 3
    await asyncio.sleep(0.05)
    fresh = await answers.get("shop", compute)
    assert fresh.value == 3 and fresh.computed_at > first.computed_at
    # Over max_age: callers wait for one shared computation.
    await asyncio.sleep(0.55)
    waited = await asyncio.gather(*(answers.get("shop", compute) for _ in range(3)))
    assert {a.value for a in waited} == {4} and compute.calls == 4


async def test_a_failed_refresh_keeps_the_last_answer_and_a_waiting_caller_sees_the_error() -> None:
    answers: SlowAnswers[int] = SlowAnswers(live_below=0.01, refresh_after=0.05, max_age=0.3)
    assert (await answers.get("shop", Counter(0.02))).value == 1

    async def broken() -> int:
        await asyncio.sleep(0.02)
        raise RuntimeError("database gone")

    await asyncio.sleep(0.06)
    assert (await answers.get("shop", broken)).value == 1  # stale, the refresh fails behind it
    await asyncio.sleep(0.05)
    assert (await answers.get("shop", broken)).value == 1  # still the last good answer
    await asyncio.sleep(0.3)
    with pytest.raises(RuntimeError, match="database gone"):
        await answers.get("shop", broken)
