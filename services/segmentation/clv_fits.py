"""Fitting a shop's CLV model and writing each customer's predictions onto their profile; for large shops,
in the background.

A fit reads every buyer's purchase summary, fits on at most `FIT_SAMPLE` of them and writes three
predictions onto every profile: for a shop of a million buyers over a minute of work, longer than the
gateway waits for an answer. So above `clv_inline_fit_limit` customers a fit is recorded
(`clv_fit_requests`), answered at once with 202, and done by a task of the same replica; should that
replica stop first, the next scheduled refresh does it (services/segmentation/schedule.py). A fit that
cannot be made (too few buyers up to `as_of`, a model that predicts nonsense) keeps its request with the
reason, for `GET /api/v1/clv/fit` to show, until the next fit is asked for.

One fit per shop at a time: each takes the shop's fit lock (an advisory lock); a task that does not get
it waits for the holder.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import numpy as np
import structlog
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import PAID_STATUSES
from laoke.kit import clock
from laoke.kit.db import Database
from laoke.kit.errors import Unprocessable
from services.segmentation import background
from services.segmentation.clv import BgNbd, GammaGamma, fit_bgnbd, fit_gamma_gamma
from services.segmentation.models import ClvFitRequest, ClvModel

log = structlog.get_logger(__name__)

_PAID = ", ".join(f"'{s.value}'" for s in PAID_STATUSES)
# Per buyer, from the first purchase: repeat purchases x, days to the last one t_x, age T in days, and
# the average value of the repeat purchases (the first is excluded, as the spend model requires).
_SUMMARY = text(
    f"""
SELECT customer_id, count(*) - 1 AS x,
       extract(epoch FROM max(placed_at) - min(placed_at)) / 86400 AS t_x,
       extract(epoch FROM CAST(:as_of AS timestamptz) - min(placed_at)) / 86400 AS age,
       CASE WHEN count(*) > 1
            THEN (sum(paid_fen - refunded_fen) - (array_agg(paid_fen - refunded_fen ORDER BY placed_at))[1])
                 / (count(*) - 1) / 100.0
            ELSE 0 END AS zbar,
       avg(paid_fen - refunded_fen) / 100.0 AS mean_spend
FROM segmentation.profile_orders
WHERE shop_id = :shop AND status IN ({_PAID}) AND placed_at <= :as_of
GROUP BY customer_id
"""  # noqa: S608 - the status list is a constant of this module; values are bound
)
_WRITE_BACK = text(
    """
UPDATE segmentation.profiles p
SET p_alive = u.p_alive, expected_purchases_90d = u.e90, clv_365d_fen = u.clv
FROM unnest(CAST(:ids AS text[]), CAST(:alive AS float8[]), CAST(:e90 AS float8[]), CAST(:clv AS bigint[]))
     AS u(customer_id, p_alive, e90, clv)
WHERE p.shop_id = :shop AND p.customer_id = u.customer_id
"""
)


# Buyers a fit looks at, at most: on a 2-core box a fit of 1,000,000 took ~60 s, of 200,000 ~10 s.
FIT_SAMPLE = 200_000


def _fit(rows: list[Any]) -> tuple[BgNbd, GammaGamma | None, np.ndarray, np.ndarray, np.ndarray]:
    if len(rows) < 10:
        raise ValueError("at least 10 customers are needed to fit the model")
    x = np.array([float(r.x) for r in rows])
    t_x = np.array([float(r.t_x) for r in rows])
    age = np.maximum(np.array([float(r.age) for r in rows]), 1e-6)
    zbar = np.array([float(r.zbar) for r in rows])
    mean_spend = float(np.mean([float(r.mean_spend) for r in rows]))
    # Four parameters need no million buyers: larger shops fit on a fixed random sample (the same one
    # each time for the same history), and every buyer is predicted from it.
    sample = np.arange(len(x))
    if len(x) > FIT_SAMPLE:
        sample = np.sort(np.random.default_rng(0).choice(len(x), FIT_SAMPLE, replace=False))
    model = fit_bgnbd(x[sample], t_x[sample], age[sample])
    try:
        spend: GammaGamma | None = fit_gamma_gamma(x[sample], zbar[sample])
    except ValueError:
        spend = None  # too few repeat buyers: CLV uses the shop's mean order value
    alive = model.p_alive(x, t_x, age)
    e90 = model.expected_purchases(90, x, t_x, age)
    e365 = model.expected_purchases(365, x, t_x, age)
    value = spend.expected_spend(x, zbar, mean_spend) if spend else np.full(len(x), mean_spend)
    clv = np.round(e365 * value * 100)
    for name, values in (("P(alive)", alive), ("expected purchases", e90), ("CLV", clv)):
        # Never stored: a profile would show it and the customer API refuses negative values.
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"the fitted model gives invalid {name} for some buyers")
    return model, spend, alive, e90, clv


async def fit_shop(session: AsyncSession, shop_id: str, as_of: datetime) -> ClvModel:
    started = time.perf_counter()
    rows = list(await session.execute(_SUMMARY, {"shop": shop_id, "as_of": as_of}))
    try:
        model, spend, alive, e90, clv = await asyncio.to_thread(_fit, rows)
    except ValueError as exc:
        raise Unprocessable(f"cannot fit: {exc} (this shop has {len(rows)} buyers up to {as_of})") from exc
    await session.execute(
        _WRITE_BACK,
        {
            "shop": shop_id,
            "ids": [r.customer_id for r in rows],
            "alive": alive.tolist(),
            "e90": e90.tolist(),
            "clv": [int(v) for v in clv],
        },
    )
    parameters: dict[str, Any] = {"bg_nbd": {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b}}
    if spend is not None:
        parameters["gamma_gamma"] = {"p": spend.p, "q": spend.q, "gamma": spend.gamma}
    values = {
        "as_of": as_of,
        "parameters": parameters,
        "customers": model.customers,
        "log_likelihood": model.log_likelihood,
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    await session.execute(
        insert(ClvModel)
        .values(shop_id=shop_id, **values)
        .on_conflict_do_update(index_elements=["shop_id"], set_={**values, "fitted_at": clock.now()})
    )
    row = await session.scalar(
        select(ClvModel).where(ClvModel.shop_id == shop_id).execution_options(populate_existing=True)
    )
    assert row is not None
    return row


_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended('segmentation.clv_fit:' || :shop, 0))")


async def request(session: AsyncSession, shop_id: str, as_of: datetime | None) -> ClvFitRequest:
    """Record a fit to run in the background (replacing any earlier request, failed or waiting)."""
    values = {"as_of": as_of, "requested_at": clock.now(), "failed_at": None, "error": None}
    return (
        await session.scalars(
            insert(ClvFitRequest)
            .values(shop_id=shop_id, **values)
            .on_conflict_do_update(index_elements=["shop_id"], set_=values)
            .returning(ClvFitRequest),
            execution_options={"populate_existing": True},
        )
    ).one()


async def last_request(session: AsyncSession, shop_id: str) -> ClvFitRequest | None:
    """The shop's fit waiting to run, or the last background fit that failed."""
    return await session.scalar(select(ClvFitRequest).where(ClvFitRequest.shop_id == shop_id))


async def clear_failure(session: AsyncSession, shop_id: str) -> None:
    """A fit succeeded within a request: an earlier background failure is no longer the news."""
    await session.execute(
        delete(ClvFitRequest).where(ClvFitRequest.shop_id == shop_id, ClvFitRequest.failed_at.is_not(None))
    )


async def waiting(session: AsyncSession) -> list[str]:
    """Shops whose requested fit has not run (its replica stopped first, or it is running now)."""
    return list(await session.scalars(select(ClvFitRequest.shop_id).where(ClvFitRequest.failed_at.is_(None))))


async def _fit_requested(session: AsyncSession, shop_id: str) -> bool:
    """Under the shop's fit lock: the waiting request fitted, or its failure recorded; False when none
    waits."""
    asked = await session.scalar(
        select(ClvFitRequest).where(ClvFitRequest.shop_id == shop_id, ClvFitRequest.failed_at.is_(None))
    )
    if asked is None:
        return False
    requested_at, as_of = asked.requested_at, asked.as_of
    # A newer request (asked meanwhile) is left for the next pass, whatever became of this one.
    this_one = (ClvFitRequest.shop_id == shop_id, ClvFitRequest.requested_at <= requested_at)
    try:
        row = await fit_shop(session, shop_id, as_of or clock.now())
    except Unprocessable as exc:  # nothing was written: keep the reason for the shop owner
        await session.execute(
            update(ClvFitRequest).where(*this_one).values(failed_at=clock.now(), error=exc.detail)
        )
        log.warning("clv_fit_failed", shop_id=shop_id, error=exc.detail)
        return True
    await session.execute(delete(ClvFitRequest).where(*this_one))
    log.info("clv_fitted", shop_id=shop_id, customers=row.customers, seconds=row.fit_seconds)
    return True


async def run_requested(db: Database, shop_id: str, *, give_up_after: float = 600.0) -> None:
    """Do the shop's requested fits until none waits (background.work_through)."""
    await background.work_through(
        db, _TRY_LOCK, shop_id, lambda session: _fit_requested(session, shop_id), give_up_after=give_up_after
    )


def start(db: Database, shop_id: str) -> None:
    """Run the shop's requested fit in this process, after the request has been committed."""
    background.start(run_requested(db, shop_id), "clv_fit_crashed", shop_id)
