"""Request and response models of the segmentation API."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from laoke.kit.money import Yuan

Gender = Literal["male", "female"]
_MOBILE = re.compile(r"^1[3-9]\d{9}$")


class CustomerOut(BaseModel):
    """A customer's profile. Name, mobile, e-mail and birthday are masked unless the key has the `pii`
    scope, and always in lists."""

    customer_id: str = Field(examples=["cus_3f9a0c1e5b7d2a48"])
    nick: str | None = Field(
        default=None, description="The buyer's nick on the channel", examples=["tb_小李"]
    )
    name: str | None = Field(default=None, examples=["李*"])
    gender: Gender | None = None
    birthday: date | None = Field(default=None, description="Only with the pii scope")
    birthday_month: int | None = Field(default=None, examples=[11])
    age: int | None = Field(default=None, examples=[31])
    mobile: str | None = Field(default=None, examples=["138****8000"])
    email: str | None = Field(default=None, examples=["l***@example.com"])
    province: str | None = Field(default=None, examples=["浙江省"])
    city: str | None = Field(default=None, examples=["杭州市"])
    channels: list[str] = Field(default_factory=list, examples=[["taobao", "shopify"]])
    external_ids: dict[str, str] = Field(
        default_factory=dict, examples=[{"taobao": "AAHk5d-EAAeGwJedwSHpsrOV"}]
    )
    orders_count: int = Field(description="Paid orders (refunded in full do not count)", examples=[3])
    total_spent: Yuan = Field(description="Paid minus refunded, in yuan")
    average_order_value: Yuan
    refunds_count: int = Field(default=0, description="Orders with a refund")
    refunded: Yuan = Field(default=0, description="Refunded in total, in yuan")
    first_order_at: datetime | None
    last_order_at: datetime | None
    favorites_count: int = 0
    carts_count: int = 0
    last_seen_at: datetime | None = Field(default=None, description="Latest behaviour event")
    lifecycle: str | None = Field(
        description="new, active, sleeping (沉睡), churned (流失) or prospect", examples=["active"]
    )
    r_score: int | None = Field(description="Recency 1-5", examples=[5])
    f_score: int | None = Field(description="Frequency 1-5", examples=[3])
    m_score: int | None = Field(description="Monetary 1-5", examples=[4])
    rfm_segment: str | None = Field(description="One of the eight RFM classes", examples=["important_value"])
    rfm_segment_name: str | None = Field(examples=["重要价值"])
    scored_at: datetime | None
    tier: str | None = Field(default=None, description="VIP tier name (from loyalty)", examples=["金卡"])
    tier_level: int | None = Field(default=None, examples=[2])
    points_balance: int = Field(default=0, description="Available points (from loyalty)")
    consent: dict[str, bool] = Field(
        default_factory=dict,
        description="Per channel; a missing channel means not opted out",
        examples=[{"sms": False}],
    )
    tags: list[str] = Field(default_factory=list, examples=[["VIP", "爱喝绿茶"]])
    attributes: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="What the buyer told the shop (survey answers); segment rules read `attributes.<key>`",
        examples=[{"skin_type": "dry", "wishes": ["面霜"]}],
    )
    p_alive: float | None = Field(default=None, description="Probability the buyer is still a customer")
    expected_purchases_90d: float | None = None
    clv_365d: Yuan | None = Field(default=None, description="Predicted spend over the next 365 days")


class CustomerDetail(CustomerOut):
    groups: list[str] = Field(default_factory=list, description="Ids of the static groups the customer is in")
    segments: list[str] = Field(
        default_factory=list, description="Ids of the segments the customer is in now"
    )
    edited_fields: list[str] = Field(
        default_factory=list, description="Fields the shop set by hand; order data no longer overwrites them"
    )


class CustomerPatch(BaseModel):
    """会员信息登记: the shop records what it knows. A field given (even as null) counts as edited and is
    no longer overwritten by order data."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "李雷",
                    "gender": "male",
                    "birthday": "1994-11-23",
                    "province": "浙江省",
                    "city": "杭州市",
                }
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=100)
    nick: str | None = Field(default=None, min_length=1, max_length=128)
    gender: Gender | None = None
    birthday: date | None = None
    mobile: str | None = Field(default=None, description="Mainland mobile, 11 digits")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    province: str | None = Field(default=None, min_length=2, max_length=50)
    city: str | None = Field(default=None, min_length=2, max_length=50)

    @field_validator("birthday")
    @classmethod
    def _plausible_birthday(cls, value: date | None) -> date | None:
        if value is not None and not date(1900, 1, 1) <= value <= date.today():
            raise ValueError("birthday must be between 1900-01-01 and today")
        return value

    @field_validator("mobile")
    @classmethod
    def _mobile(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = re.sub(r"[\s-]", "", value).removeprefix("+86")
        if not _MOBILE.match(digits):
            raise ValueError("mobile must be a mainland mobile number of 11 digits, e.g. 13800138000")
        return digits

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value
