"""Fitting a shop's CLV model and writing each customer's predictions onto their profile."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import numpy as np
from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.orders import PAID_STATUSES
from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound, Unprocessable
from laoke.kit.service import CallerDep
from services.segmentation.clv import BgNbd, GammaGamma, fit_bgnbd, fit_gamma_gamma
from services.segmentation.models import ClvModel

router = APIRouter(prefix="/api/v1/clv", tags=["clv"], responses=ERROR_RESPONSES)

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


class FitIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"as_of": "2026-06-30T23:59:59+08:00"}]}
    )

    as_of: AwareDatetime | None = Field(
        default=None, description="Fit on orders up to this time (default now), to back-test against later"
    )


class ClvModelOut(BaseModel):
    as_of: datetime
    time_unit: str = "days"
    bg_nbd: dict[str, float] = Field(examples=[{"r": 0.24, "alpha": 30.9, "a": 0.79, "b": 2.43}])
    gamma_gamma: dict[str, float] | None = Field(examples=[{"p": 6.25, "q": 3.74, "gamma": 15.44}])
    customers: int
    log_likelihood: float
    fit_seconds: float
    fitted_at: datetime | None = None


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


def _out(row: ClvModel) -> ClvModelOut:
    return ClvModelOut(
        as_of=row.as_of,
        bg_nbd=row.parameters["bg_nbd"],
        gamma_gamma=row.parameters.get("gamma_gamma"),
        customers=row.customers,
        log_likelihood=row.log_likelihood,
        fit_seconds=row.fit_seconds,
        fitted_at=row.fitted_at,
    )


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


@router.post(
    "/fit",
    response_model=ClvModelOut,
    summary="Fit the shop's CLV model and predict every customer",
    description="BG/NBD (Fader, Hardie & Lee 2005) by maximum likelihood on each buyer's repeat purchases, "
    "plus Gamma-Gamma for spend. Writes `p_alive`, `expected_purchases_90d` and `clv_365d` onto every "
    "profile (usable in segment rules). `as_of` fits on the orders up to then, to back-test.",
)
async def fit(body: FitIn, caller: CallerDep, session: SessionDep) -> ClvModelOut:
    return _out(await fit_shop(session, caller.shop_id, body.as_of or clock.now()))


@router.get("/model", response_model=ClvModelOut, summary="The shop's last fitted CLV model")
async def model(caller: CallerDep, session: SessionDep) -> ClvModelOut:
    row = await session.scalar(select(ClvModel).where(ClvModel.shop_id == caller.shop_id))
    if row is None:
        raise NotFound("no CLV model yet: POST /api/v1/clv/fit")
    return _out(row)
