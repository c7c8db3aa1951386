"""A shop's protection rules: the marketing frequency cap and quiet hours in the shop's time zone.

Transactional messages (催付, shipment notices) bypass both; nothing bypasses an opt-out.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.clock import LocalTime, TimeZoneName
from services.messaging.models import Policy, Shop


class ShopPolicy(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "timezone": "Asia/Shanghai",
                    "cap_messages": 3,
                    "cap_days": 7,
                    "quiet_start": "21:00",
                    "quiet_end": "09:00",
                }
            ]
        },
    )

    timezone: TimeZoneName = Field(
        "Asia/Shanghai", description="The shop's time zone for quiet hours and birthdays"
    )
    cap_messages: int = Field(3, ge=1, le=100, description="At most this many marketing messages …")
    cap_days: int = Field(7, ge=1, le=90, description="… per buyer in this many days, across channels")
    quiet_start: LocalTime | None = Field(time(21, 0), description="Marketing waits from this local time …")
    quiet_end: LocalTime | None = Field(
        time(9, 0), description="… until this one (null/null: no quiet hours)"
    )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def quiet_until(self, at: datetime) -> datetime | None:
        """When quiet hours covering `at` end (UTC), or None when `at` is outside them."""
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return None
        local = at.astimezone(self.zone)
        clock = local.time().replace(tzinfo=None)
        start, end = self.quiet_start, self.quiet_end
        if start < end:  # e.g. 12:00–14:00, within one day
            inside = start <= clock < end
            end_day = local.date()
        else:  # e.g. 21:00–09:00, across midnight
            inside = clock >= start or clock < end
            end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, end, tzinfo=self.zone).astimezone(at.tzinfo)


async def load(session: AsyncSession, shop_id: str) -> ShopPolicy:
    row = await session.get(Policy, shop_id)
    if row is not None:
        return ShopPolicy.model_validate(row.settings)
    shop = await session.get(Shop, shop_id)  # no policy yet: the defaults, in the shop's own zone
    return ShopPolicy(timezone=shop.timezone) if shop is not None else ShopPolicy()


async def save(session: AsyncSession, shop_id: str, policy: ShopPolicy) -> ShopPolicy:
    row = await session.get(Policy, shop_id)
    stored = policy.model_dump(mode="json")
    if row is None:
        session.add(Policy(shop_id=shop_id, settings=stored))
    else:
        row.settings = stored
    await session.flush()
    return policy
