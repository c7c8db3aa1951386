"""HTTP API of predicted value (CLV): fit the shop's model, follow a background fit, read the model."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.service import CallerDep
from services.segmentation import background, clv_fits
from services.segmentation.models import ClvModel
from services.segmentation.settings import SegmentationSettings

router = APIRouter(prefix="/api/v1/clv", tags=["clv"], responses=ERROR_RESPONSES)


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
    customers: int = Field(description="Buyers the model was fitted on (a sample of at most 200,000)")
    log_likelihood: float
    fit_seconds: float
    fitted_at: datetime | None = None


class ClvFitState(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "pending",
                    "requested_at": "2026-12-05T10:00:00+08:00",
                    "as_of": None,
                    "failed_at": None,
                    "error": None,
                    "model": None,
                },
                {
                    "status": "failed",
                    "requested_at": "2026-12-05T10:00:00+08:00",
                    "as_of": "2000-01-01T00:00:00+08:00",
                    "failed_at": "2026-12-05T10:00:02+08:00",
                    "error": "cannot fit: at least 10 customers are needed to fit the model "
                    "(this shop has 0 buyers up to 2000-01-01 00:00:00+08:00)",
                    "model": None,
                },
            ]
        }
    )

    status: Literal["none", "pending", "failed", "done"] = Field(
        description="`pending`: a fit of a large shop is under way in the background; `failed`: the last "
        "background fit could not be made (`error` says why; the earlier model, if any, stays); "
        "`done`: `model` is the latest fit; `none`: no fit yet"
    )
    requested_at: datetime | None = Field(
        default=None, description="When the pending or failed fit was asked for"
    )
    as_of: datetime | None = Field(default=None, description="The `as_of` it was asked with (none: now)")
    failed_at: datetime | None = None
    error: str | None = Field(default=None, examples=["cannot fit: at least 10 customers are needed …"])
    model: ClvModelOut | None = Field(default=None, description="The shop's last fitted model")


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


@router.post(
    "/fit",
    response_model=ClvModelOut,
    summary="Fit the shop's CLV model and predict every customer",
    description="BG/NBD (Fader, Hardie & Lee 2005) by maximum likelihood on each buyer's repeat purchases, "
    "plus Gamma-Gamma for spend. Writes `p_alive`, `expected_purchases_90d` and `clv_365d` onto every "
    "profile (usable in segment rules). `as_of` fits on the orders up to then, to back-test. 200 with the "
    "model; for a shop of more than `SEGMENTATION_CLV_INLINE_FIT_LIMIT` (100,000) customers 202 at once, "
    "the fit running in the background: follow `GET /api/v1/clv/fit`.",
    responses={202: {"model": ClvFitState, "description": "A large shop: fitting in the background"}},
)
async def fit(
    body: FitIn, caller: CallerDep, session: SessionDep, request: Request
) -> ClvModelOut | JSONResponse:
    settings: SegmentationSettings = request.app.state.settings
    if await background.is_large(session, caller.shop_id, settings.clv_inline_fit_limit):
        asked = await clv_fits.request(session, caller.shop_id, body.as_of)
        model = await _model(session, caller.shop_id)
        state = ClvFitState(status="pending", requested_at=asked.requested_at, as_of=asked.as_of, model=model)
        await session.commit()  # the task's own transaction must see the request
        clv_fits.start(request.app.state.db, caller.shop_id)
        return JSONResponse(state.model_dump(mode="json"), status_code=202)
    row = await clv_fits.fit_shop(session, caller.shop_id, body.as_of or clock.now())
    await clv_fits.clear_failure(session, caller.shop_id)
    return _out(row)


async def _model(session: AsyncSession, shop_id: str) -> ClvModelOut | None:
    row = await session.scalar(select(ClvModel).where(ClvModel.shop_id == shop_id))
    return _out(row) if row is not None else None


@router.get(
    "/fit",
    response_model=ClvFitState,
    summary="Where the shop's CLV fit stands",
    description="After a 202 from `POST /api/v1/clv/fit`: `pending` until the background fit is done, then "
    "`done` with the new model, or `failed` with the reason.",
)
async def fit_state(caller: CallerDep, session: SessionDep) -> ClvFitState:
    model = await _model(session, caller.shop_id)
    asked = await clv_fits.last_request(session, caller.shop_id)
    if asked is None:
        return ClvFitState(status="done" if model else "none", model=model)
    return ClvFitState(
        status="failed" if asked.failed_at else "pending",
        requested_at=asked.requested_at,
        as_of=asked.as_of,
        failed_at=asked.failed_at,
        error=asked.error,
        model=model,
    )


@router.get("/model", response_model=ClvModelOut, summary="The shop's last fitted CLV model")
async def model(caller: CallerDep, session: SessionDep) -> ClvModelOut:
    fitted = await _model(session, caller.shop_id)
    if fitted is None:
        raise NotFound("no CLV model yet: POST /api/v1/clv/fit (GET /api/v1/clv/fit shows a fit under way)")
    return fitted
