from __future__ import annotations

from gateway.ratelimit import TokenBuckets


def test_burst_then_refill_at_rate() -> None:
    buckets = TokenBuckets(rate_per_second=2, burst=3)
    assert [buckets.take("k", now=0) for _ in range(3)] == [0, 0, 0]
    wait = buckets.take("k", now=0)
    assert wait == 0.5
    assert buckets.take("k", now=0.5) == 0
    assert TokenBuckets.retry_after_header(0.2) == "1"


def test_keys_have_separate_buckets() -> None:
    buckets = TokenBuckets(rate_per_second=1, burst=1)
    assert buckets.take("a", now=0) == 0
    assert buckets.take("a", now=0) > 0
    assert buckets.take("b", now=0) == 0
