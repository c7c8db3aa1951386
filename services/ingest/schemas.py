"""Request and response models of the ingest API."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from laoke.contracts.orders import PAID_STATUSES, OrderStatus
from laoke.kit import clock
from laoke.kit.clock import TimeZoneName
from laoke.kit.money import Yuan
from services.ingest.addresses import split_region
from services.ingest.identity import normalise_mobile

# How far ahead of our clock an order's times may be. A shop-local time sent with the wrong zone is off by
# at most 14 hours; a year typed wrong (2062) would keep the buyer 活跃 for decades and, as `modified_at`,
# make every later update of the order look stale.
FUTURE_TOLERANCE = timedelta(days=1)

Channel = Literal["taobao", "tmall", "jd", "pinduoduo", "douyin", "shopify", "woocommerce", "api"]


class BuyerIn(BaseModel):
    """Who bought. At least one of `external_id`, `email` or `mobile` identifies the buyer."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The channel's id of the buyer (Taobao open uid or nick, Shopify customer id)",
    )
    nick: str | None = Field(default=None, max_length=128)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    mobile: str | None = Field(
        default=None,
        max_length=32,
        description="Buyer's mobile; the same normalised mobile on two channels is one customer",
    )

    @model_validator(mode="after")
    def _identified(self) -> BuyerIn:
        if not (self.external_id or self.email or normalise_mobile(self.mobile)):
            raise ValueError("buyer needs external_id, email or a valid mobile number")
        return self


class ReceiverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=32)
    province: str | None = Field(default=None, max_length=50)
    city: str | None = Field(default=None, max_length=50)
    district: str | None = Field(default=None, max_length=50)
    address: str | None = Field(default=None, max_length=500)
    zip: str | None = Field(default=None, max_length=16)

    @model_validator(mode="after")
    def _region_from_address(self) -> ReceiverIn:
        """A source that sends only the full address still gets its province and city parsed."""
        if not self.province and self.address:
            self.province, city = split_region(self.address)
            self.city = self.city or city
        return self


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=128)
    title: str = Field(default="", max_length=500)
    quantity: int = Field(ge=1, le=1_000_000)
    price: Yuan


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: str = Field(min_length=1, max_length=128)
    amount: Yuan


class OrderIn(BaseModel):
    """An order as a shop's system knows it. Posting the same `(channel, order_id)` again updates it;
    fields left out of an update keep their stored values (items, receiver, refunds, ...)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "api",
                    "order_id": "T20261122-0001",
                    "status": "completed",
                    "buyer": {"external_id": "buyer-42", "nick": "小李", "mobile": "13800138000"},
                    "currency": "CNY",
                    "total_amount": "128.50",
                    "items": [{"sku": "TEA-01", "title": "明前龙井 250g", "quantity": 1, "price": "128.50"}],
                    "placed_at": "2026-11-20T09:30:00+08:00",
                    "paid_at": "2026-11-20T09:31:00+08:00",
                    "shipped_at": "2026-11-20T16:00:00+08:00",
                    "completed_at": "2026-11-22T10:00:00+08:00",
                    "coupon_codes": ["NEW10"],
                    "receiver": {
                        "name": "李雷",
                        "phone": "13800138000",
                        "province": "浙江省",
                        "city": "杭州市",
                        "district": "西湖区",
                        "address": "文三路 100 号",
                    },
                }
            ]
        },
    )

    channel: Channel = "api"
    order_id: str = Field(min_length=1, max_length=128, description="The order id in the source system")
    status: OrderStatus
    buyer: BuyerIn
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    total_amount: Yuan
    paid_amount: Yuan | None = Field(
        default=None,
        description="Defaults to total_amount once the order is paid (a `refunded` order was paid), 0 before",
    )
    refunded_amount: Yuan = Field(
        default=Decimal(0),
        description="Total refunded; the sum of `refunds` when those are given, and the amount paid when "
        "the status is `refunded` and neither is given",
    )
    refunds: list[RefundIn] = Field(default_factory=list, max_length=200)
    items: list[OrderItemIn] = Field(default_factory=list, max_length=500)
    coupon_codes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    receiver: ReceiverIn | None = None
    placed_at: AwareDatetime
    paid_at: AwareDatetime | None = None
    shipped_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    modified_at: AwareDatetime | None = Field(
        default=None,
        description="When the source last changed the order; an older update never overwrites a newer one. "
        "Defaults to the latest timestamp given.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OrderIn:
        latest = clock.now() + FUTURE_TOLERANCE
        for name in ("placed_at", "paid_at", "shipped_at", "completed_at", "modified_at"):
            at = getattr(self, name)
            if at is not None and at > latest:
                raise ValueError(
                    f"{name} {at.isoformat()} is more than a day in the future; check its year and time zone"
                )
        paid = self.resolved_paid_amount
        if paid > self.total_amount:
            raise ValueError("paid_amount cannot exceed total_amount")
        if self.refunds:
            self.refunded_amount = sum((r.amount for r in self.refunds), Decimal(0))
        elif self.status == OrderStatus.REFUNDED and "refunded_amount" not in self.model_fields_set:
            self.refunded_amount = paid  # `refunded` says the buyer got everything back
        if self.refunded_amount > paid:
            raise ValueError("refunded_amount cannot exceed the amount paid")
        return self

    @property
    def resolved_paid_amount(self) -> Decimal:
        if self.paid_amount is not None:
            return self.paid_amount
        # A refunded order was paid first: its refund is measured against what was paid.
        paid = self.status in PAID_STATUSES or self.status == OrderStatus.REFUNDED
        return self.total_amount if paid else Decimal(0)

    @property
    def resolved_modified_at(self) -> datetime:
        stamps = [
            t for t in (self.completed_at, self.shipped_at, self.paid_at, self.placed_at) if t is not None
        ]
        return self.modified_at or max(stamps)


class OrderOut(BaseModel):
    id: str = Field(examples=["ord_5d1f0c2b9a7e4c31"])
    channel: str
    order_id: str
    customer_id: str = Field(examples=["cus_3f9a0c1e5b7d2a48"])
    status: OrderStatus
    currency: str
    total_amount: Yuan
    paid_amount: Yuan
    refunded_amount: Yuan
    item_count: int
    items: list[OrderItemIn]
    coupon_codes: list[str]
    buyer_nick: str | None
    receiver: ReceiverIn | None = Field(
        description="Phone and address are masked unless the API key has the `pii` scope"
    )
    placed_at: datetime
    paid_at: datetime | None
    shipped_at: datetime | None
    completed_at: datetime | None
    modified_at: datetime
    import_id: str | None = Field(description="The history import that last wrote this order")


class OrderUpsertOut(BaseModel):
    outcome: Literal["created", "updated", "unchanged", "stale"] = Field(
        description="`stale`: the stored order is newer than this update, which was ignored"
    )
    order: OrderOut


class CustomerLookupOut(BaseModel):
    customer_id: str = Field(examples=["cus_3f9a0c1e5b7d2a48"])
    channel: Channel
    external_id: str = Field(examples=["buyer-42"])


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class IngestSettingsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"merge_by_mobile": True, "timezone": "Asia/Shanghai"}]},
    )

    merge_by_mobile: bool | None = Field(
        default=None, description="The same mobile number on two channels is one customer"
    )
    timezone: TimeZoneName | None = Field(
        default=None,
        max_length=64,
        description="IANA zone of times sent without an offset (Taobao webhooks and exports)",
    )


class IngestSettingsOut(BaseModel):
    merge_by_mobile: bool
    timezone: str = Field(examples=["Asia/Shanghai"])
