"""What RFM scores and labels mean for a shop: the eight classic RFM classes, the lifecycle labels,
and a shop's thresholds (a preset, or every boundary of its own) with how they are stored.

Scores (1–5) come from the thresholds: Recency by days since the last paid order (fewer days, higher
score), Frequency by paid orders and Monetary by spend (paid minus refunded) within the look-back
window. A score of 3 or more is "high"; the three highs pick one of eight classes. Lifecycle: `active`
≤ `active_days` since the last purchase (`new` if the first purchase is that recent too), `sleeping` ≤
`sleeping_days`, `churned` beyond. services/segmentation/rfm.py computes them.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from enum import StrEnum
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.money import from_fen
from services.segmentation.models import RfmConfig

Preset = Literal["default", "high_ticket", "fast_moving", "custom"]


class RfmClass(StrEnum):
    IMPORTANT_VALUE = "important_value"  # 重要价值: recent, frequent, big spender
    IMPORTANT_DEVELOP = "important_develop"  # 重要发展: recent, big spender, not yet frequent
    IMPORTANT_KEEP = "important_keep"  # 重要保持: frequent big spender drifting away
    IMPORTANT_RETAIN = "important_retain"  # 重要挽留: big spender, neither recent nor frequent
    GENERAL_VALUE = "general_value"  # 一般价值
    GENERAL_DEVELOP = "general_develop"  # 一般发展
    GENERAL_KEEP = "general_keep"  # 一般保持
    GENERAL_RETAIN = "general_retain"  # 一般挽留


CHINESE = {
    RfmClass.IMPORTANT_VALUE: "重要价值",
    RfmClass.IMPORTANT_DEVELOP: "重要发展",
    RfmClass.IMPORTANT_KEEP: "重要保持",
    RfmClass.IMPORTANT_RETAIN: "重要挽留",
    RfmClass.GENERAL_VALUE: "一般价值",
    RfmClass.GENERAL_DEVELOP: "一般发展",
    RfmClass.GENERAL_KEEP: "一般保持",
    RfmClass.GENERAL_RETAIN: "一般挽留",
}

# (recent, frequent, big spender) → class
CLASSES = {
    (True, True, True): RfmClass.IMPORTANT_VALUE,
    (True, False, True): RfmClass.IMPORTANT_DEVELOP,
    (False, True, True): RfmClass.IMPORTANT_KEEP,
    (False, False, True): RfmClass.IMPORTANT_RETAIN,
    (True, True, False): RfmClass.GENERAL_VALUE,
    (True, False, False): RfmClass.GENERAL_DEVELOP,
    (False, True, False): RfmClass.GENERAL_KEEP,
    (False, False, False): RfmClass.GENERAL_RETAIN,
}
HIGH_SCORE = 3


class Lifecycle(StrEnum):
    NEW = "new"
    ACTIVE = "active"
    SLEEPING = "sleeping"  # 沉睡
    CHURNED = "churned"  # 流失
    PROSPECT = "prospect"  # no paid order yet


Thresholds = list[int]


class RfmConfigIn(BaseModel):
    """Either a preset, or every threshold (each list: four strictly increasing boundaries)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"preset": "high_ticket"},
                {
                    "preset": "custom",
                    "window_days": 365,
                    "recency_days": [30, 60, 90, 180],
                    "frequency": [2, 3, 5, 8],
                    "monetary": ["100.00", "300.00", "1000.00", "3000.00"],
                    "active_days": 90,
                    "sleeping_days": 180,
                },
            ]
        },
    )

    preset: Preset = "custom"
    window_days: int | None = Field(default=None, ge=1, le=3650, description="Look-back for F and M")
    recency_days: Thresholds | None = Field(
        default=None, description="Days since last purchase for R 5,4,3,2"
    )
    frequency: Thresholds | None = Field(default=None, description="Paid orders for F 2,3,4,5")
    monetary: list[str] | None = Field(default=None, description="Spend (yuan) for M 2,3,4,5")
    active_days: int | None = Field(default=None, ge=1, le=3650)
    sleeping_days: int | None = Field(default=None, ge=1, le=3650)
    # What `GET /api/v1/rfm/config` answers besides the thresholds, accepted so that what was read can
    # be sent back changed (read, change a threshold, write): read-only, ignored.
    rescore: dict[str, object] | None = Field(default=None, exclude=True, description="Read-only; ignored")

    @model_validator(mode="after")
    def _complete(self) -> RfmConfigIn:
        if self.preset != "custom":
            return self
        missing = [
            name
            for name in (
                "window_days",
                "recency_days",
                "frequency",
                "monetary",
                "active_days",
                "sleeping_days",
            )
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"a custom config needs {', '.join(missing)} (or pick a preset)")
        return self


class RfmSettings(BaseModel):
    preset: Preset
    window_days: int
    recency_days: Thresholds
    frequency: Thresholds
    monetary_fen: Thresholds
    active_days: int
    sleeping_days: int

    @model_validator(mode="after")
    def _consistent(self) -> RfmSettings:
        # Each message names its field first (`field: …`), as a validator's does, so a form can show
        # it next to the field; the values as the shop typed them (yuan, not fen).
        for name in ("recency_days", "frequency", "monetary_fen"):
            values = getattr(self, name)
            field = name.removesuffix("_fen")
            if len(values) != 4 or any(v < 0 for v in values):
                raise ValueError(f"{field}: needs four non-negative boundaries")
            if any(b <= a for a, b in pairwise(values)):
                shown = ", ".join(str(from_fen(v)) if field == "monetary" else str(v) for v in values)
                raise ValueError(f"{field}: boundaries must strictly increase ({shown})")
        if self.sleeping_days <= self.active_days:
            raise ValueError("sleeping_days: must be greater than active_days (lifecycle boundaries overlap)")
        return self


PRESETS: dict[str, RfmSettings] = {
    "default": RfmSettings(
        preset="default",
        window_days=365,
        recency_days=[30, 60, 90, 180],
        frequency=[2, 3, 5, 8],
        monetary_fen=[10_000, 30_000, 100_000, 300_000],
        active_days=90,
        sleeping_days=180,
    ),
    # Appliances and the like: one purchase a year is a loyal buyer.
    "high_ticket": RfmSettings(
        preset="high_ticket",
        window_days=730,
        recency_days=[180, 365, 540, 730],
        frequency=[2, 3, 4, 6],
        monetary_fen=[200_000, 500_000, 1_000_000, 3_000_000],
        active_days=365,
        sleeping_days=730,
    ),
    # Food and daily goods: a good buyer comes back within weeks.
    "fast_moving": RfmSettings(
        preset="fast_moving",
        window_days=180,
        recency_days=[7, 14, 30, 60],
        frequency=[3, 6, 12, 24],
        monetary_fen=[5_000, 15_000, 50_000, 150_000],
        active_days=30,
        sleeping_days=60,
    ),
}


def settings_from(body: RfmConfigIn) -> RfmSettings:
    if body.preset != "custom":
        return PRESETS[body.preset]
    try:
        monetary = [int(Decimal(v) * 100) for v in body.monetary or []]
    except InvalidOperation as exc:
        raise ValueError(
            f"monetary: boundaries must be amounts in yuan ({', '.join(body.monetary or [])})"
        ) from exc
    assert body.window_days and body.active_days and body.sleeping_days
    return RfmSettings(
        preset="custom",
        window_days=body.window_days,
        recency_days=body.recency_days or [],
        frequency=body.frequency or [],
        monetary_fen=monetary,
        active_days=body.active_days,
        sleeping_days=body.sleeping_days,
    )


async def load(session: AsyncSession, shop_id: str) -> RfmSettings:
    row = await session.scalar(select(RfmConfig).where(RfmConfig.shop_id == shop_id))
    if row is None:
        return PRESETS["default"]
    return RfmSettings(
        preset=row.preset,  # type: ignore[arg-type]
        window_days=row.window_days,
        recency_days=list(row.recency_days),
        frequency=list(row.frequency),
        monetary_fen=list(row.monetary_fen),
        active_days=row.active_days,
        sleeping_days=row.sleeping_days,
    )
