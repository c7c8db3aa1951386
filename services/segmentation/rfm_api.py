"""HTTP API of RFM: the shop's configuration, a recompute on demand, and the summary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Unprocessable
from laoke.kit.money import Yuan, from_fen
from laoke.kit.service import CallerDep
from services.segmentation import rfm, rfm_config, segments, summaries
from services.segmentation.models import Profile, RfmConfig

router = APIRouter(prefix="/api/v1/rfm", tags=["rfm"], responses=ERROR_RESPONSES)


class RfmConfigOut(BaseModel):
    preset: rfm_config.Preset
    window_days: int = Field(examples=[365])
    recency_days: list[int] = Field(examples=[[30, 60, 90, 180]])
    frequency: list[int] = Field(examples=[[2, 3, 5, 8]])
    monetary: list[Yuan]
    active_days: int = Field(examples=[90])
    sleeping_days: int = Field(examples=[180])


class RescoreOut(BaseModel):
    customers_changed: int
    lifecycle_changes: int
    rfm_class_changes: int


class RfmSummary(BaseModel):
    customers: int
    by_lifecycle: dict[str, int] = Field(examples=[{"active": 120, "sleeping": 40, "churned": 300}])
    by_class: dict[str, int] = Field(examples=[{"important_value": 12, "general_retain": 200}])
    class_names: dict[str, str] = Field(description="Chinese name of each class")
    class_spend: dict[str, Yuan] = Field(default_factory=dict, description="What each class spent, yuan")
    grid: list[list[int]] = Field(description="Customers per R (rows, 5 → 1) × F (columns, 1 → 5)")
    grid_spend: list[list[Yuan]] = Field(default_factory=list, description="What each R × F cell spent, yuan")
    computed_at: datetime = Field(description="When these figures were counted")


def _out(settings: rfm_config.RfmSettings) -> RfmConfigOut:
    return RfmConfigOut(
        preset=settings.preset,
        window_days=settings.window_days,
        recency_days=settings.recency_days,
        frequency=settings.frequency,
        monetary=[from_fen(v) for v in settings.monetary_fen],
        active_days=settings.active_days,
        sleeping_days=settings.sleeping_days,
    )


@router.get("/config", response_model=RfmConfigOut, summary="The shop's RFM thresholds and lifecycle days")
async def get_config(caller: CallerDep, session: SessionDep) -> RfmConfigOut:
    return _out(await rfm_config.load(session, caller.shop_id))


@router.put(
    "/config",
    response_model=RfmConfigOut,
    summary="Set RFM thresholds (a preset or custom) and recompute the shop",
    description="Presets: `default`; `high_ticket` (appliances: one purchase a year is loyal); `fast_moving` "
    "(food and daily goods). Custom lists hold four strictly increasing boundaries: recency days for "
    "R = 5, 4, 3, 2; orders for F = 2, 3, 4, 5; spend for M = 2, 3, 4, 5. Every customer is rescored at "
    "once and label changes are announced.",
)
async def put_config(
    body: Annotated[rfm_config.RfmConfigIn, Body()], caller: CallerDep, session: SessionDep
) -> RfmConfigOut:
    try:
        settings = rfm_config.settings_from(body)
    except ValidationError as exc:
        raise Unprocessable("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from exc
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    values = settings.model_dump()
    await session.execute(
        insert(RfmConfig)
        .values(shop_id=caller.shop_id, **values)
        .on_conflict_do_update(index_elements=["shop_id"], set_={**values, "updated_at": func.now()})
    )
    now = clock.now()
    await rfm.rescore(session, caller.shop_id, settings, now)
    await segments.refresh_shop(session, caller.shop_id, now)
    return _out(settings)


@router.post("/refresh", response_model=RescoreOut, summary="Rescore every customer of the shop now")
async def refresh(caller: CallerDep, session: SessionDep) -> RescoreOut:
    settings = await rfm_config.load(session, caller.shop_id)
    now = clock.now()
    changed, lifecycle, classes = await rfm.rescore(session, caller.shop_id, settings, now)
    await segments.refresh_shop(session, caller.shop_id, now)
    return RescoreOut(customers_changed=changed, lifecycle_changes=lifecycle, rfm_class_changes=classes)


@router.get(
    "/summary",
    response_model=RfmSummary,
    summary="Customers per lifecycle label, RFM class and R×F cell",
    description="Counted afresh for most shops; for the largest (a count over a few hundred thousand "
    "profiles) the last count is answered at once and recounted in the background, so `computed_at` "
    "may be up to `SEGMENTATION_SUMMARY_REFRESH_SECONDS` (15 s) old.",
)
async def summary(caller: CallerDep, request: Request) -> RfmSummary:
    counted = await summaries.answer(request, f"rfm:{caller.shop_id}", lambda s: _count(s, caller.shop_id))
    return counted.value.model_copy(update={"computed_at": counted.computed_at})


async def _count(session: AsyncSession, shop_id: str) -> RfmSummary:
    # One scan of the shop's profiles grouped by all four labels at once (a few hundred groups), rolled
    # up here into the three breakdowns: unlike GROUPING SETS, a plain GROUP BY runs as a parallel
    # scan (≈ 240 ms instead of ≈ 400 ms for a million profiles on two cores).
    rows = await session.execute(
        select(
            Profile.lifecycle,
            Profile.rfm_segment,
            Profile.r_score,
            Profile.f_score,
            func.count(),
            func.coalesce(func.sum(Profile.total_spent_fen), 0),
        )
        .where(Profile.shop_id == shop_id)
        .group_by(Profile.lifecycle, Profile.rfm_segment, Profile.r_score, Profile.f_score)
    )
    by_lifecycle: dict[str | None, int] = {}
    by_class: dict[str, int] = {}
    class_fen: dict[str, int] = {}
    grid = [[0] * 5 for _ in range(5)]
    grid_fen = [[0] * 5 for _ in range(5)]
    for lifecycle, rfm_class, r, f, n, spent in rows:
        by_lifecycle[lifecycle] = by_lifecycle.get(lifecycle, 0) + n
        if rfm_class is not None:
            by_class[rfm_class] = by_class.get(rfm_class, 0) + n
            class_fen[rfm_class] = class_fen.get(rfm_class, 0) + int(spent)
        if r is not None and f is not None:
            grid[5 - r][f - 1] += n
            grid_fen[5 - r][f - 1] += int(spent)
    class_spend = {k: from_fen(v) for k, v in class_fen.items()}
    grid_spend = [[from_fen(v) for v in row] for row in grid_fen]
    return RfmSummary(
        customers=sum(by_lifecycle.values()),
        by_lifecycle={str(k): v for k, v in by_lifecycle.items() if k is not None},
        by_class=by_class,
        class_spend=class_spend,
        class_names={c.value: name for c, name in rfm_config.CHINESE.items()},
        grid=grid,
        grid_spend=grid_spend,
        computed_at=clock.now(),
    )
