"""Marketplace order payloads → Laoke orders.

Each marketplace's JSON is read through a small pydantic model of the fields Laoke uses (anything else
is ignored), then mapped onto `OrderIn`, so a marketplace order is validated exactly like an API order.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from laoke.contracts.orders import OrderStatus
from laoke.kit.money import Yuan
from services.ingest.schemas import BuyerIn, OrderIn, OrderItemIn, ReceiverIn, RefundIn

_LENIENT = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _sum(amounts: list[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0))


# ---------------------------------------------------------------------------------------------- Shopify


class ShopifyCustomer(BaseModel):
    model_config = _LENIENT

    id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class ShopifyAddress(BaseModel):
    model_config = _LENIENT

    name: str | None = None
    phone: str | None = None
    province: str | None = None
    city: str | None = None
    address1: str | None = None
    address2: str | None = None
    zip: str | None = None


class ShopifyLineItem(BaseModel):
    model_config = _LENIENT

    id: str | None = None
    sku: str | None = None
    title: str = ""
    quantity: int = Field(ge=1)
    price: Yuan


class ShopifyTransaction(BaseModel):
    model_config = _LENIENT

    amount: Yuan
    kind: str = "refund"
    status: str | None = "success"


class ShopifyRefund(BaseModel):
    model_config = _LENIENT

    id: str
    order_id: str | None = None
    created_at: datetime | None = None
    transactions: list[ShopifyTransaction] = []

    @property
    def amount(self) -> Decimal:
        return _sum(
            [t.amount for t in self.transactions if t.kind == "refund" and t.status in (None, "success")]
        )


class ShopifyFulfillment(BaseModel):
    model_config = _LENIENT

    created_at: datetime | None = None


class ShopifyDiscountCode(BaseModel):
    model_config = _LENIENT

    code: str


class ShopifyOrder(BaseModel):
    model_config = _LENIENT

    id: str
    email: str | None = None
    phone: str | None = None
    currency: str = "CNY"
    total_price: Yuan
    financial_status: str | None = None
    fulfillment_status: str | None = None
    cancelled_at: datetime | None = None
    closed_at: datetime | None = None
    created_at: datetime
    processed_at: datetime | None = None
    updated_at: datetime | None = None
    customer: ShopifyCustomer | None = None
    shipping_address: ShopifyAddress | None = None
    line_items: list[ShopifyLineItem] = []
    discount_codes: list[ShopifyDiscountCode] = []
    refunds: list[ShopifyRefund] = []
    fulfillments: list[ShopifyFulfillment] = []


_SHOPIFY_PAID = {"paid", "partially_refunded", "refunded", "partially_paid"}


def _shopify_status(order: ShopifyOrder) -> OrderStatus:
    financial = order.financial_status or "pending"
    if financial == "refunded":
        return OrderStatus.REFUNDED
    if financial == "partially_refunded":
        return OrderStatus.PARTIALLY_REFUNDED
    if order.cancelled_at is not None or financial == "voided":
        return OrderStatus.CLOSED
    if financial not in _SHOPIFY_PAID:
        if financial in ("pending", "authorized"):
            return OrderStatus.CREATED
        raise ValueError(f"unknown Shopify financial_status {financial!r}")
    if order.fulfillment_status == "fulfilled":
        return OrderStatus.COMPLETED if order.closed_at is not None else OrderStatus.SHIPPED
    return OrderStatus.PAID


def shopify_order(payload: dict[str, Any]) -> OrderIn:
    order = ShopifyOrder.model_validate(payload)
    status = _shopify_status(order)
    customer = order.customer or ShopifyCustomer()
    shipping = order.shipping_address
    paid = status not in (OrderStatus.CREATED, OrderStatus.CLOSED)
    shipped_at = next((f.created_at for f in order.fulfillments if f.created_at), None)
    return OrderIn(
        channel="shopify",
        order_id=order.id,
        status=status,
        buyer=BuyerIn(
            external_id=_text(customer.id),
            nick=" ".join(filter(None, (customer.first_name, customer.last_name))) or None,
            email=_text(customer.email or order.email),
            mobile=_text(customer.phone or order.phone or (shipping.phone if shipping else None)),
        ),
        currency=order.currency,
        total_amount=order.total_price,
        paid_amount=order.total_price if paid else Decimal(0),
        refunds=[RefundIn(refund_id=r.id, amount=r.amount) for r in order.refunds if r.amount],
        items=[
            OrderItemIn(sku=i.sku or i.id or "?", title=i.title, quantity=i.quantity, price=i.price)
            for i in order.line_items
        ],
        coupon_codes=[d.code for d in order.discount_codes],
        receiver=ReceiverIn(
            name=shipping.name,
            phone=shipping.phone,
            province=shipping.province,
            city=shipping.city,
            address=" ".join(filter(None, (shipping.address1, shipping.address2))) or None,
            zip=shipping.zip,
        )
        if shipping
        else None,
        placed_at=order.created_at,
        paid_at=(order.processed_at or order.created_at) if paid else None,
        shipped_at=shipped_at,
        # Fulfilled and closed is completed, partly refunded or not (loyalty credits completed orders).
        completed_at=order.closed_at
        if order.fulfillment_status == "fulfilled"
        and status in (OrderStatus.COMPLETED, OrderStatus.PARTIALLY_REFUNDED)
        else None,
        modified_at=order.updated_at,
    )


# ------------------------------------------------------------------------------------------ WooCommerce


class WooAddress(BaseModel):
    model_config = _LENIENT

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    state: str | None = None
    city: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    postcode: str | None = None


class WooLineItem(BaseModel):
    model_config = _LENIENT

    product_id: str | None = None
    sku: str | None = None
    name: str = ""
    quantity: int = Field(ge=1)
    price: Yuan


class WooRefund(BaseModel):
    model_config = _LENIENT

    id: str
    total: Decimal  # WooCommerce sends refunds as negative totals: "-5.00"


class WooCoupon(BaseModel):
    model_config = _LENIENT

    code: str


class WooOrder(BaseModel):
    model_config = _LENIENT

    id: str
    status: str
    currency: str = "CNY"
    total: Yuan
    customer_id: str | None = None
    date_created_gmt: datetime
    date_paid_gmt: datetime | None = None
    date_completed_gmt: datetime | None = None
    date_modified_gmt: datetime | None = None
    billing: WooAddress = WooAddress()
    shipping: WooAddress = WooAddress()
    line_items: list[WooLineItem] = []
    coupon_lines: list[WooCoupon] = []
    refunds: list[WooRefund] = []

    @field_validator(
        "date_created_gmt", "date_paid_gmt", "date_completed_gmt", "date_modified_gmt", mode="before"
    )
    @classmethod
    def _gmt(cls, value: Any) -> Any:
        # WooCommerce's *_gmt fields are UTC without an offset: "2026-11-20T01:30:00".
        if isinstance(value, str) and value and value[-1] != "Z" and "+" not in value[10:]:
            return value + "+00:00"
        return value or None


_WOO_STATUS = {
    "pending": OrderStatus.CREATED,
    "on-hold": OrderStatus.CREATED,
    "processing": OrderStatus.PAID,
    "completed": OrderStatus.COMPLETED,
    "cancelled": OrderStatus.CLOSED,
    "failed": OrderStatus.CLOSED,
    "refunded": OrderStatus.REFUNDED,
}


def woocommerce_order(payload: dict[str, Any]) -> OrderIn:
    order = WooOrder.model_validate(payload)
    status = _WOO_STATUS.get(order.status)
    if status is None:
        raise ValueError(f"unknown WooCommerce status {order.status!r}")
    completed = status == OrderStatus.COMPLETED  # still completed when part of it is refunded below
    refunds = [RefundIn(refund_id=r.id, amount=abs(r.total)) for r in order.refunds if r.total]
    if refunds and status in (OrderStatus.PAID, OrderStatus.COMPLETED):
        status = OrderStatus.PARTIALLY_REFUNDED
    paid = status not in (OrderStatus.CREATED, OrderStatus.CLOSED)
    billing, shipping = order.billing, order.shipping
    customer_id = order.customer_id if order.customer_id not in (None, "", "0") else None
    return OrderIn(
        channel="woocommerce",
        order_id=order.id,
        status=status,
        buyer=BuyerIn(
            external_id=customer_id,
            nick=" ".join(filter(None, (billing.first_name, billing.last_name))) or None,
            email=_text(billing.email),
            mobile=_text(billing.phone or shipping.phone),
        ),
        currency=order.currency,
        total_amount=order.total,
        paid_amount=order.total if paid else Decimal(0),
        refunds=refunds,
        items=[
            OrderItemIn(sku=i.sku or i.product_id or "?", title=i.name, quantity=i.quantity, price=i.price)
            for i in order.line_items
        ],
        coupon_codes=[c.code for c in order.coupon_lines],
        receiver=ReceiverIn(
            name=" ".join(filter(None, (shipping.first_name, shipping.last_name))) or None,
            phone=shipping.phone,
            province=shipping.state,
            city=shipping.city,
            address=" ".join(filter(None, (shipping.address_1, shipping.address_2))) or None,
            zip=shipping.postcode,
        ),
        placed_at=order.date_created_gmt,
        paid_at=order.date_paid_gmt if paid else None,
        completed_at=order.date_completed_gmt if completed else None,
        modified_at=order.date_modified_gmt,
    )


# ----------------------------------------------------------------------------------------------- Taobao

# TOP's trade statuses (taobao.trade.fullinfo.get).
_TAOBAO_STATUS = {
    "TRADE_NO_CREATE_PAY": OrderStatus.CREATED,
    "WAIT_BUYER_PAY": OrderStatus.CREATED,
    "PAY_PENDING": OrderStatus.CREATED,
    "WAIT_PRE_AUTH_CONFIRM": OrderStatus.CREATED,
    "WAIT_SELLER_SEND_GOODS": OrderStatus.PAID,
    "SELLER_CONSIGNED_PART": OrderStatus.SHIPPED,
    "WAIT_BUYER_CONFIRM_GOODS": OrderStatus.SHIPPED,
    "TRADE_BUYER_SIGNED": OrderStatus.SHIPPED,
    "TRADE_FINISHED": OrderStatus.COMPLETED,
    "TRADE_CLOSED": OrderStatus.REFUNDED,  # closed after payment: the buyer was refunded in full
    "TRADE_CLOSED_BY_TAOBAO": OrderStatus.CLOSED,  # closed before payment
}


class TaobaoSubOrder(BaseModel):
    model_config = _LENIENT

    oid: str | None = None
    title: str = ""
    num: int = Field(default=1, ge=1)
    price: Yuan = Decimal(0)
    payment: Yuan | None = None
    refund_fee: Yuan | None = None
    refund_status: str | None = None
    outer_sku_id: str | None = None
    sku_id: str | None = None
    num_iid: str | None = None


class TaobaoTrade(BaseModel):
    model_config = _LENIENT

    tid: str
    status: str
    buyer_nick: str | None = None
    buyer_open_uid: str | None = None
    payment: Yuan
    total_fee: Yuan | None = None
    created: str
    pay_time: str | None = None
    consign_time: str | None = None
    end_time: str | None = None
    modified: str | None = None
    receiver_name: str | None = None
    receiver_mobile: str | None = None
    receiver_phone: str | None = None
    receiver_state: str | None = None
    receiver_city: str | None = None
    receiver_district: str | None = None
    receiver_address: str | None = None
    receiver_zip: str | None = None
    orders: list[TaobaoSubOrder] = []

    @field_validator("orders", mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        # TOP's JSON wraps lists: {"orders": {"order": [...]}}.
        if isinstance(value, dict):
            return value.get("order", [])
        return value or []


def taobao_time(value: str | None, zone: ZoneInfo) -> datetime | None:
    """TOP times are shop-local wall-clock: `2026-11-20 09:30:00`."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)
    except ValueError as exc:
        raise ValueError(f"time {value!r} is not yyyy-MM-dd HH:mm:ss") from exc


def taobao_trade(payload: dict[str, Any], zone: ZoneInfo, channel: str = "taobao") -> OrderIn:
    trade = TaobaoTrade.model_validate(payload)
    status = _TAOBAO_STATUS.get(trade.status)
    if status is None:
        raise ValueError(f"unknown Taobao trade status {trade.status!r}")
    paid_at = taobao_time(trade.pay_time, zone)
    if status == OrderStatus.REFUNDED and paid_at is None:
        status = OrderStatus.CLOSED  # TRADE_CLOSED without a payment time was never paid
    completed = status == OrderStatus.COMPLETED  # still completed when part of it is refunded below
    refunds = [
        RefundIn(refund_id=o.oid or trade.tid, amount=o.refund_fee or o.payment or o.price * o.num)
        for o in trade.orders
        if o.refund_status == "SUCCESS"
    ]
    if status == OrderStatus.REFUNDED and not refunds:
        refunds = [RefundIn(refund_id=trade.tid, amount=trade.payment)]
    refund_total = _sum([r.amount for r in refunds])
    if refunds and status in (OrderStatus.COMPLETED, OrderStatus.SHIPPED, OrderStatus.PAID):
        # Every sub-order refunded is the whole payment back, whatever the trade's status says.
        full = refund_total >= trade.payment
        status = OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED
    paid = status not in (OrderStatus.CREATED, OrderStatus.CLOSED)
    total = max(trade.payment, trade.total_fee or Decimal(0))
    if refund_total > trade.payment:
        refunds = [RefundIn(refund_id=trade.tid, amount=trade.payment)]
    return OrderIn(
        channel=channel,  # type: ignore[arg-type]
        order_id=trade.tid,
        status=status,
        buyer=BuyerIn(
            external_id=_text(trade.buyer_open_uid) or _text(trade.buyer_nick),
            nick=_text(trade.buyer_nick),
            mobile=_text(trade.receiver_mobile),
        ),
        currency="CNY",
        total_amount=total,
        paid_amount=trade.payment if paid else Decimal(0),
        refunds=refunds if paid else [],
        items=[
            OrderItemIn(
                sku=o.outer_sku_id or o.sku_id or o.num_iid or o.oid or "?",
                title=o.title,
                quantity=o.num,
                price=o.price,
            )
            for o in trade.orders
        ],
        receiver=ReceiverIn(
            name=trade.receiver_name,
            phone=trade.receiver_mobile or trade.receiver_phone,
            province=trade.receiver_state,
            city=trade.receiver_city,
            district=trade.receiver_district,
            address=trade.receiver_address,
            zip=trade.receiver_zip,
        ),
        placed_at=taobao_time(trade.created, zone),  # type: ignore[arg-type]
        paid_at=paid_at if paid else None,
        shipped_at=taobao_time(trade.consign_time, zone),
        completed_at=taobao_time(trade.end_time, zone) if completed else None,
        modified_at=taobao_time(trade.modified, zone),
    )


class TaobaoRefund(BaseModel):
    """Content of TMC refund messages (taobao_refund_RefundSuccess)."""

    model_config = _LENIENT

    refund_id: str
    tid: str
    oid: str | None = None
    refund_fee: Yuan
    modified: str | None = None


class TmcMessage(BaseModel):
    """A Taobao Message Channel notification: `{"id", "topic", "content"}`; content may be a JSON string."""

    model_config = _LENIENT

    id: str
    topic: str = Field(validation_alias=AliasChoices("topic", "user_topic"))
    content: dict[str, Any]

    @field_validator("content", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            return orjson.loads(value)
        return value
