"""A shop's loyalty programme: how points are earned and expire, the tiers, sign-in and bonuses.

Stored whole as validated JSON (one row per shop); a shop without a row runs on the defaults below.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.cache import TtlCache
from laoke.kit.clock import TimeZoneName
from laoke.kit.money import Yuan, to_fen
from services.loyalty.models import Program

Rounding = Literal["floor", "round", "ceil"]


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: int = Field(ge=1, le=20)
    name: str = Field(min_length=1, max_length=64, examples=["金卡"])
    min_spend: Yuan = Field(default=Decimal(0), description="Spend on completed orders, in yuan")
    min_orders: int = Field(default=0, ge=0, description="Completed orders")
    discount: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Share of the price a member of this tier pays, in percent: 95 is 9.5折, 100 no discount",
    )
    perks: list[str] = Field(default_factory=list, max_length=20)

    @property
    def min_spend_fen(self) -> int:
        return to_fen(self.min_spend)


class StreakBonus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(ge=2, le=366, description="Consecutive days of sign-in")
    points: int = Field(ge=1, le=1_000_000)


class Signin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_points: int = Field(default=5, ge=0, le=1_000_000)
    streak_bonuses: list[StreakBonus] = Field(default_factory=list, max_length=20)
    # After the longest bonus the streak starts over (a 7-day cycle pays its bonus every week).
    cycle: bool = True

    @field_validator("streak_bonuses")
    @classmethod
    def _distinct(cls, bonuses: list[StreakBonus]) -> list[StreakBonus]:
        days = [b.days for b in bonuses]
        if len(set(days)) != len(days):
            raise ValueError("each streak length may have one bonus")
        return sorted(bonuses, key=lambda b: b.days)


class Expiry(BaseModel):
    """`none`; `rolling`: each lot expires `days` after it was credited; `annual`: everything credited
    in a year expires on `month`/`day` of the next year (shop-local midnight)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["none", "rolling", "annual"] = "none"
    days: int | None = Field(default=None, ge=1, le=3650)
    month: int | None = Field(default=None, ge=1, le=12)
    day: int | None = Field(default=None, ge=1, le=31)
    notice_days: int = Field(default=30, ge=1, le=365, description="Announce expiring points this early")

    @model_validator(mode="after")
    def _complete(self) -> Expiry:
        if self.mode == "rolling" and self.days is None:
            raise ValueError("rolling expiry needs days")
        if self.mode == "annual":
            if self.month is None or self.day is None:
                raise ValueError("annual expiry needs month and day")
            date(2025, self.month, self.day)  # a real date (not 2-30)
        return self


class ProgramSettings(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "earn_rate": "1",
                    "rounding": "floor",
                    "credit_on": "completed",
                    "tiers": [
                        {"level": 1, "name": "普通会员", "discount": 100},
                        {"level": 2, "name": "银卡", "min_spend": "500", "discount": 98},
                        {"level": 3, "name": "金卡", "min_spend": "2000", "min_orders": 5, "discount": 95},
                    ],
                    "never_downgrade": True,
                    "signin": {"daily_points": 5, "streak_bonuses": [{"days": 7, "points": 50}]},
                    "expiry": {"mode": "rolling", "days": 365, "notice_days": 30},
                    "birthday_bonus": 100,
                    "profile_bonus": 50,
                    "timezone": "Asia/Shanghai",
                }
            ]
        },
    )

    earn_rate: Decimal = Field(default=Decimal(1), ge=0, le=1000, description="Points per yuan kept")
    rounding: Rounding = "floor"
    credit_on: Literal["completed", "paid"] = Field(
        default="completed", description="`paid`: points are pending from payment and credited on completion"
    )
    tiers: list[Tier] = Field(default_factory=list, max_length=20)
    never_downgrade: bool = Field(default=True, description="Once granted, a tier only goes up")
    reevaluation_days: int | None = Field(
        default=None,
        ge=30,
        le=3650,
        description="Tiers count only the last N days of orders (with never_downgrade off, members drop)",
    )
    signin: Signin = Field(default_factory=Signin)
    expiry: Expiry = Field(default_factory=Expiry)
    birthday_bonus: int = Field(default=0, ge=0, le=1_000_000)
    profile_bonus: int = Field(default=0, ge=0, le=1_000_000, description="Once, for a complete profile")
    timezone: TimeZoneName = "Asia/Shanghai"

    @model_validator(mode="after")
    def _tiers_rise(self) -> ProgramSettings:
        tiers = sorted(self.tiers, key=lambda t: t.level)
        levels = [t.level for t in tiers]
        if len(set(levels)) != len(levels):
            raise ValueError("tier levels must be distinct")
        for lower, higher in pairwise(tiers):
            if higher.min_spend < lower.min_spend or higher.min_orders < lower.min_orders:
                raise ValueError(
                    f"tier {higher.level} asks for less than tier {lower.level}: thresholds rise with level"
                )
            if (higher.min_spend, higher.min_orders) == (lower.min_spend, lower.min_orders):
                raise ValueError(f"tiers {lower.level} and {higher.level} have the same thresholds")
            if higher.discount > lower.discount:
                raise ValueError(
                    f"tier {higher.level} pays more ({higher.discount}%) than tier {lower.level} "
                    f"({lower.discount}%): discounts never rise with level"
                )
        self.tiers = tiers
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    def points_for(self, kept_fen: int) -> int:
        """Points for money kept by the shop (paid minus refunded), by the earn rate and rounding."""
        exact = Decimal(max(kept_fen, 0)) * self.earn_rate / 100
        if self.rounding == "floor":
            return math.floor(exact)
        if self.rounding == "ceil":
            return math.ceil(exact)
        return int(exact.to_integral_value(rounding="ROUND_HALF_UP"))

    def tier(self, level: int) -> Tier | None:
        return next((t for t in self.tiers if t.level == level), None)

    def level_for(self, spend_fen: int, orders: int) -> int:
        reached = [t.level for t in self.tiers if spend_fen >= t.min_spend_fen and orders >= t.min_orders]
        return max(reached, default=0)

    def expires_at(self, credited_at: datetime) -> datetime | None:
        if self.expiry.mode == "rolling":
            assert self.expiry.days is not None
            return credited_at + timedelta(days=self.expiry.days)
        if self.expiry.mode == "annual":
            assert self.expiry.month is not None and self.expiry.day is not None
            local_year = credited_at.astimezone(self.zone).year
            return datetime(local_year + 1, self.expiry.month, self.expiry.day, tzinfo=self.zone).astimezone(
                UTC
            )
        return None


DEFAULT = ProgramSettings()
# The programme is read on every order event; a change reaches every replica within this many seconds.
_CACHE: TtlCache[ProgramSettings] = TtlCache(seconds=5.0, max_entries=10_000)


async def load(session: AsyncSession, shop_id: str) -> ProgramSettings:
    hit, cached = _CACHE.get(shop_id)
    if hit and cached is not None:
        return cached
    stored = await session.scalar(select(Program.settings).where(Program.shop_id == shop_id))
    program = ProgramSettings.model_validate(stored) if stored is not None else DEFAULT
    _CACHE.put(shop_id, program)
    return program


def forget(shop_id: str) -> None:
    _CACHE.forget(shop_id)
