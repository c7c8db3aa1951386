"""Customer analytics over time: new, active, returning and churned buyers, repeat rate, revenue split.

Buckets are calendar days, weeks or months in the shop's time zone. Definitions:
- active: bought (a paid order) in the bucket; new: active and the first purchase ever is in the bucket;
  returning: active and not new; repeat rate: share of active buyers with two or more orders in it;
- churned: the bucket in which a buyer crossed the shop's churn boundary (`sleeping_days` after their
  last purchase) and has not bought since; churn rate: churned / buyers not yet churned at its start;
- revenue: paid minus refunded, from new and from returning buyers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import PAID_STATUSES
from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound, Unprocessable
from laoke.kit.money import Yuan, from_fen
from laoke.kit.service import CallerDep
from services.segmentation import rfm_config, summaries
from services.segmentation.models import Group, Segment
from services.segmentation.rules import SHOP_TIME_ZONE

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"], responses=ERROR_RESPONSES)

MAX_BUCKETS = 400
_PAID = ", ".join(f"'{s.value}'" for s in PAID_STATUSES)

# Buckets are numbered 1..n; a time falls in bucket `width_bucket(t, :bounds)` (0: before the first),
# a binary search over the buckets' start instants (computed in Python, `bucket_starts`), so no row
# pays for a time-zone conversion and every scan can run in parallel.
_SERIES = text(
    f"""
WITH buckets AS (
    SELECT g.i, g.since AT TIME ZONE :tz AS start
    FROM unnest(CAST(:bounds AS timestamptz[])) WITH ORDINALITY AS g(since, i)
), bought AS (
    SELECT width_bucket(o.placed_at, CAST(:bounds AS timestamptz[])) AS i, o.customer_id,
           count(*) AS orders, sum(o.paid_fen - o.refunded_fen) AS net,
           bool_or(width_bucket(p.first_order_at, CAST(:bounds AS timestamptz[]))
                   = width_bucket(o.placed_at, CAST(:bounds AS timestamptz[]))) AS is_new
    FROM segmentation.profile_orders o
    JOIN segmentation.profiles p ON p.shop_id = o.shop_id AND p.customer_id = o.customer_id
    WHERE o.shop_id = :shop AND o.status IN ({_PAID})
      AND o.placed_at >= :start AND o.placed_at < :finish
    GROUP BY 1, 2
), churned AS (
    SELECT width_bucket(p.last_order_at + make_interval(days => :churn_days),
                        CAST(:bounds AS timestamptz[])) AS i,
           count(*) AS n
    FROM segmentation.profiles p
    WHERE p.shop_id = :shop AND p.last_order_at + make_interval(days => :churn_days) >= :start
      AND p.last_order_at + make_interval(days => :churn_days) < :finish
    GROUP BY 1
), spans AS MATERIALIZED (
    -- A buyer counts towards a bucket's base when their first purchase is before the bucket and their
    -- churn boundary not yet passed: from the bucket after the first purchase's up to the boundary's.
    -- One parallel scan groups the buyers by that span (a few hundred groups at most) ...
    SELECT width_bucket(p.first_order_at, CAST(:bounds AS timestamptz[])) + 1 AS entered,
           width_bucket(p.last_order_at + make_interval(days => :churn_days),
                        CAST(:bounds AS timestamptz[])) + 1 AS left_at,
           count(*) AS n
    FROM segmentation.profiles p
    WHERE p.shop_id = :shop AND p.first_order_at IS NOT NULL AND p.last_order_at IS NOT NULL
    GROUP BY 1, 2
), base_steps AS MATERIALIZED (
    -- ... and each span adds its buyers where it starts and takes them off where it ends.
    SELECT i, sum(delta) AS delta
    FROM (SELECT entered AS i, n AS delta FROM spans UNION ALL SELECT left_at, -n FROM spans) steps
    GROUP BY i
)
SELECT b.start,
       count(x.customer_id) AS active,
       count(x.customer_id) FILTER (WHERE x.is_new) AS new,
       count(x.customer_id) FILTER (WHERE NOT x.is_new) AS returning,
       count(x.customer_id) FILTER (WHERE x.orders >= 2) AS repeaters,
       coalesce(sum(x.net) FILTER (WHERE x.is_new), 0) AS revenue_new,
       coalesce(sum(x.net) FILTER (WHERE NOT x.is_new), 0) AS revenue_returning,
       coalesce(max(c.n), 0) AS churned,
       (SELECT coalesce(sum(s.delta), 0) FROM base_steps s WHERE s.i <= b.i) AS base
FROM buckets b
LEFT JOIN bought x ON x.i = b.i
LEFT JOIN churned c ON c.i = b.i
GROUP BY b.i, b.start
ORDER BY b.i
"""  # noqa: S608 - the status list is a constant of this module; values are bound
)


def bucket_starts(start: datetime, finish: datetime, unit: str, zone: ZoneInfo) -> list[datetime]:
    """The instants where each day, week (Monday) or month starts in `zone`, from the one holding
    `start` to the one holding the last instant before `finish`."""
    local = start.astimezone(zone)
    day = local.date()
    if unit == "week":
        day -= timedelta(days=day.weekday())
    elif unit == "month":
        day = day.replace(day=1)
    starts: list[datetime] = []
    while True:
        at = datetime(day.year, day.month, day.day, tzinfo=zone)
        if at >= finish:
            return starts
        starts.append(at)
        if unit == "month":
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        else:
            day += timedelta(days=7 if unit == "week" else 1)


class Bucket(BaseModel):
    start: datetime = Field(description="Start of the bucket, in the shop's time zone")
    new_customers: int
    active_customers: int
    returning_customers: int
    churned_customers: int
    churn_rate: float = Field(description="Churned / customers not yet churned at the bucket's start")
    repeat_purchase_rate: float = Field(description="Active customers with 2+ orders / active customers")
    revenue_new: Yuan
    revenue_returning: Yuan


class CustomerAnalytics(BaseModel):
    interval: str
    timezone: str
    computed_at: datetime = Field(
        description="When these figures were counted (for the largest shops, up to "
        "`SEGMENTATION_SUMMARY_REFRESH_SECONDS` old: the last count is answered while a new one runs)"
    )
    buckets: list[Bucket]


@router.get(
    "/customers",
    response_model=CustomerAnalytics,
    summary="New, active, returning and churned customers over time",
    description="Per day, week or month between `from` and `to` (at most 400 buckets): new, active, "
    "returning and churned customers, churn rate, repeat-purchase rate, and revenue from new versus "
    "returning buyers. Churn uses the shop's RFM `sleeping_days`.",
)
async def customer_analytics(
    caller: CallerDep,
    request: Request,
    start: Annotated[AwareDatetime, Query(alias="from", examples=["2026-01-01T00:00:00+08:00"])],
    finish: Annotated[AwareDatetime, Query(alias="to", examples=["2026-07-01T00:00:00+08:00"])],
    interval: Literal["day", "week", "month"] = "month",
    timezone: Annotated[str, Query(max_length=64)] = "Asia/Shanghai",
) -> CustomerAnalytics:
    try:
        clock.zone_name(timezone)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    if finish <= start:
        raise Unprocessable("`to` must be after `from`")
    approx = {"day": 1, "week": 7, "month": 28}[interval]
    if (finish - start) / timedelta(days=approx) > MAX_BUCKETS:
        raise Unprocessable(f"at most {MAX_BUCKETS} buckets; use a longer interval or a shorter range")
    key = f"analytics:{caller.shop_id}:{start.isoformat()}:{finish.isoformat()}:{interval}:{timezone}"
    counted = await summaries.answer(
        request, key, lambda session: _series(session, caller.shop_id, start, finish, interval, timezone)
    )
    return counted.value.model_copy(update={"computed_at": counted.computed_at})


async def _series(
    session: AsyncSession, shop_id: str, start: datetime, finish: datetime, interval: str, timezone: str
) -> CustomerAnalytics:
    settings = await rfm_config.load(session, shop_id)
    rows = await session.execute(
        _SERIES,
        {
            "shop": shop_id,
            "bounds": bucket_starts(start, finish, interval, ZoneInfo(timezone)),
            "start": start,
            "finish": finish,
            "tz": timezone,
            "churn_days": settings.sleeping_days,
        },
    )
    zone = ZoneInfo(timezone)
    return CustomerAnalytics(
        interval=interval,
        timezone=timezone,
        computed_at=clock.now(),
        buckets=[
            Bucket(
                start=r.start.replace(tzinfo=zone),
                new_customers=r.new,
                active_customers=r.active,
                returning_customers=r.returning,
                churned_customers=r.churned,
                churn_rate=round(r.churned / r.base, 4) if r.base else 0.0,
                repeat_purchase_rate=round(r.repeaters / r.active, 4) if r.active else 0.0,
                revenue_new=from_fen(int(r.revenue_new)),
                revenue_returning=from_fen(int(r.revenue_returning)),
            )
            for r in rows
        ],
    )


class Share(BaseModel):
    value: str = Field(examples=["浙江省"])
    customers: int


class Portrait(BaseModel):
    """客户画像: who the customers of a segment, a group or the whole shop are."""

    customers: int
    gender: list[Share] = Field(description="male, female, unknown")
    age_bands: list[Share] = Field(description="<18, 18-24, 25-29, 30-34, 35-39, 40-49, 50+, unknown")
    provinces: list[Share] = Field(description="Most common first, top 40, then `unknown`")
    cities: list[Share] = Field(description="Most common first, top 20")
    lifecycle: list[Share]
    tiers: list[Share]


AGE_BANDS = ((0, 17, "<18"), (18, 24, "18-24"), (25, 29, "25-29"), (30, 34, "30-34"), (35, 39, "35-39"))
_AGE_SQL = (
    "CASE WHEN birthday IS NULL THEN 'unknown' "
    + " ".join(f"WHEN age < {high + 1} THEN '{label}'" for _, high, label in AGE_BANDS)
    + " WHEN age < 50 THEN '40-49' ELSE '50+' END"
)
_PORTRAIT = f"""
WITH who AS (
    SELECT p.*, extract(year FROM age(CAST(:today AS date), p.birthday)) AS age
    FROM segmentation.profiles p
    WHERE p.shop_id = :shop {{scope}}
)
SELECT 'gender' AS dimension, coalesce(gender, 'unknown') AS value, count(*) AS n FROM who GROUP BY 2
UNION ALL SELECT 'age', {_AGE_SQL}, count(*) FROM who GROUP BY 2
UNION ALL SELECT 'province', coalesce(province, 'unknown'), count(*) FROM who GROUP BY 2
UNION ALL SELECT 'city', city, count(*) FROM who WHERE city IS NOT NULL GROUP BY 2
UNION ALL SELECT 'lifecycle', coalesce(lifecycle, 'unknown'), count(*) FROM who GROUP BY 2
UNION ALL SELECT 'tier', coalesce(tier, 'none'), count(*) FROM who GROUP BY 2
"""  # noqa: S608 - the age bands are constants of this module
_SCOPES = {
    "segment": "AND EXISTS (SELECT 1 FROM segmentation.segment_members m WHERE m.shop_id = p.shop_id "
    "AND m.segment_id = :scope_id AND m.customer_id = p.customer_id)",
    "group": "AND EXISTS (SELECT 1 FROM segmentation.group_members m WHERE m.shop_id = p.shop_id "
    "AND m.group_id = :scope_id AND m.customer_id = p.customer_id)",
}
_AGE_ORDER = [label for _, _, label in AGE_BANDS] + ["40-49", "50+", "unknown"]


@router.get(
    "/portrait",
    response_model=Portrait,
    summary="Customer portrait (客户画像) of a segment, a group or the whole shop",
    description="Gender, age bands (from birthdays, in the shop's time zone), provinces and cities (from "
    "receiver addresses and profile edits), lifecycle and tier. "
    "Give at most one of `segment_id`, `group_id`.",
)
async def portrait(
    caller: CallerDep,
    session: SessionDep,
    segment_id: Annotated[str | None, Query(max_length=32)] = None,
    group_id: Annotated[str | None, Query(max_length=32)] = None,
) -> Portrait:
    if segment_id and group_id:
        raise Unprocessable("give segment_id or group_id, not both")
    scope, scope_id = (
        ("segment", segment_id) if segment_id else ("group", group_id) if group_id else ("", None)
    )
    if scope:
        table = Segment if scope == "segment" else Group
        found = await session.scalar(
            select(table.id).where(table.shop_id == caller.shop_id, table.id == scope_id)
        )
        if found is None:
            raise NotFound(f"{scope} {scope_id} not found")
    rows = await session.execute(
        text(_PORTRAIT.format(scope=_SCOPES.get(scope, ""))),  # scope SQL is a constant of this module
        {
            "shop": caller.shop_id,
            "today": clock.now().astimezone(SHOP_TIME_ZONE).date(),
            "scope_id": scope_id,
        },
    )
    by: dict[str, list[Share]] = {}
    for dimension, value, n in rows:
        by.setdefault(dimension, []).append(Share(value=value, customers=n))
    for shares in by.values():
        shares.sort(key=lambda s: (s.value == "unknown", -s.customers, s.value))
    by.setdefault("age", []).sort(key=lambda s: _AGE_ORDER.index(s.value))
    return Portrait(
        customers=sum(s.customers for s in by.get("gender", [])),
        gender=by.get("gender", []),
        age_bands=by["age"],
        provinces=by.get("province", [])[:41],
        cities=by.get("city", [])[:20],
        lifecycle=by.get("lifecycle", []),
        tiers=by.get("tier", []),
    )
