"""Order lifecycle rules: upsert by source id, never let a stale update win, announce real changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.customers import BuyerSnapshot
from laoke.contracts.envelope import event_key
from laoke.contracts.orders import ORDER_EVENT_TYPES, PAID_STATUSES, OrderEventPayload, OrderStatus
from laoke.contracts.topics import Topic
from laoke.kit.errors import Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.money import from_fen, to_fen
from laoke.kit.outbox import Outbox, OutboxEvent
from laoke.kit.pii import mask_name, mask_phone
from services.ingest.identity import IdentityResolver, buyer_keys, normalise_mobile, shop_settings
from services.ingest.models import Order
from services.ingest.repository import OrderRepository
from services.ingest.schemas import BuyerIn, OrderIn, OrderItemIn, OrderOut, ReceiverIn

Outcome = Literal["created", "updated", "unchanged", "stale"]
ORDER_COMPLETED = ORDER_EVENT_TYPES[OrderStatus.COMPLETED]

_TRACKED = (
    "status",
    "currency",
    "total_fen",
    "paid_fen",
    "refunded_fen",
    "refunds",
    "item_count",
    "items",
    "coupon_codes",
    "buyer_nick",
    "receiver",
    "placed_at",
    "paid_at",
    "shipped_at",
    "completed_at",
)


def _order_values(data: OrderIn) -> dict[str, object]:
    return {
        "status": data.status.value,
        "currency": data.currency,
        "total_fen": to_fen(data.total_amount),
        "paid_fen": to_fen(data.resolved_paid_amount),
        "refunded_fen": to_fen(data.refunded_amount),
        "refunds": {r.refund_id: to_fen(r.amount) for r in data.refunds},
        "item_count": sum(item.quantity for item in data.items),
        "items": [item.model_dump(mode="json") for item in data.items],
        "coupon_codes": data.coupon_codes,
        "buyer_nick": data.buyer.nick,
        "receiver": data.receiver.model_dump(mode="json", exclude_none=True) if data.receiver else None,
        "placed_at": data.placed_at,
        "paid_at": data.paid_at,
        "shipped_at": data.shipped_at,
        "completed_at": data.completed_at,
        "source_modified_at": data.resolved_modified_at,
    }


async def upsert_order(
    session: AsyncSession, outbox: Outbox, shop_id: str, data: OrderIn
) -> tuple[Outcome, Order]:
    orders = OrderRepository(session)
    settings = await shop_settings(session, shop_id)
    buyer = data.buyer
    customer_id = await IdentityResolver(session, outbox, shop_id).resolve(
        buyer_keys(data.channel, buyer.external_id, buyer.email, buyer.mobile),
        merge_by_mobile=settings.merge_by_mobile,
    )
    values = _order_values(data)
    row = {
        "id": new_id("ord"),
        "shop_id": shop_id,
        "channel": data.channel,
        "external_order_id": data.order_id,
        "customer_id": customer_id,
        "import_id": None,
        **values,
    }
    # The inserted values are the whole order: its event is written with it, and it is not read back.
    new = Order(**row)
    _, event = outbox.row(_order_event(new, previous=None, buyer=buyer))
    order = await orders.insert_or_lock(row, event)
    if order is None:
        return "created", new
    if data.resolved_modified_at < order.source_modified_at:
        return "stale", order
    _keep_what_was_left_out(data, order, values)
    if all(getattr(order, name) == values[name] for name in _TRACKED):
        return "unchanged", order
    previous = OrderStatus(order.status)
    refunded_before, completed_before = order.refunded_fen, order.completed_at
    for name, value in values.items():
        setattr(order, name, value)
    # A partially refunded order that then completes keeps its status: its completion is news too
    # (points held until completion are released by it), announced as `order.completed`.
    completed_now = completed_before is None and order.completed_at is not None
    status_moved = previous != OrderStatus(order.status) or order.refunded_fen != refunded_before
    announced = None
    if status_moved or completed_now:
        named = None if status_moved else ORDER_COMPLETED
        announced = outbox.row(_order_event(order, previous=previous, buyer=buyer, event_type=named))[1]
    await orders.update(order, announced)
    return "updated", order


def _keep_what_was_left_out(data: OrderIn, order: Order, values: dict[str, Any]) -> None:
    """An update keeps what its sender left out: an app that posts only an order's new status must not
    wipe its items, receiver, coupon codes, earlier times or refunds (money refunded stays refunded).
    What is sent, even empty (`"items": []`), replaces; marketplace webhooks always send everything."""
    given = data.model_fields_set
    if "items" not in given:
        values["items"], values["item_count"] = order.items, order.item_count
    for name in ("currency", "coupon_codes", "receiver", "paid_at", "shipped_at", "completed_at"):
        if name not in given:
            values[name] = getattr(order, name)
    if "nick" not in data.buyer.model_fields_set:
        values["buyer_nick"] = order.buyer_nick
    if "paid_amount" not in given and order.paid_fen and values["paid_fen"]:
        values["paid_fen"] = min(order.paid_fen, values["total_fen"])
    if not given & {"refunds", "refunded_amount"} and order.refunded_fen:
        values["refunds"] = order.refunds
        values["refunded_fen"] = min(order.refunded_fen, values["paid_fen"])
        if values["refunded_fen"] and OrderStatus(values["status"]) in PAID_STATUSES:
            full = values["refunded_fen"] >= values["paid_fen"]
            values["status"] = (OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED).value


def _buyer_snapshot(order: Order, buyer: BuyerIn | None) -> BuyerSnapshot:
    receiver = order.receiver or {}
    return BuyerSnapshot(
        external_id=buyer.external_id if buyer else None,
        nick=order.buyer_nick,
        email=buyer.email.strip().lower() if buyer and buyer.email else None,
        mobile=normalise_mobile(buyer.mobile if buyer else None) or normalise_mobile(receiver.get("phone")),
        receiver_name=receiver.get("name"),
        province=receiver.get("province"),
        city=receiver.get("city"),
    )


async def _announce(
    session: AsyncSession,
    outbox: Outbox,
    order: Order,
    previous: OrderStatus | None,
    buyer: BuyerIn | None = None,
) -> None:
    await outbox.add_many(session, [_order_event(order, previous, buyer)])


def _order_event(
    order: Order, previous: OrderStatus | None, buyer: BuyerIn | None = None, event_type: str | None = None
) -> OutboxEvent:
    """The order's event: named by its status, unless the change has a name of its own."""
    status = OrderStatus(order.status)
    return OutboxEvent(
        topic=Topic.ORDERS,
        event_type=event_type or ORDER_EVENT_TYPES[status],
        shop_id=order.shop_id,
        key=event_key(order.shop_id, order.customer_id),
        occurred_at=order.source_modified_at,
        payload=OrderEventPayload(
            order_id=order.id,
            customer_id=order.customer_id,
            channel=order.channel,
            external_order_id=order.external_order_id,
            status=status,
            previous_status=previous,
            currency=order.currency,
            total_fen=order.total_fen,
            paid_fen=order.paid_fen,
            refunded_fen=order.refunded_fen,
            item_count=order.item_count,
            placed_at=order.placed_at,
            paid_at=order.paid_at,
            shipped_at=order.shipped_at,
            completed_at=order.completed_at,
            source_modified_at=order.source_modified_at,
            coupon_codes=order.coupon_codes,
            buyer=_buyer_snapshot(order, buyer),
        ),
    )


def _masked_receiver(receiver: dict[str, str] | None, pii: bool) -> ReceiverIn | None:
    if receiver is None:
        return None
    if pii:
        return ReceiverIn(**receiver)
    return ReceiverIn(
        name=mask_name(receiver.get("name")),
        phone=mask_phone(receiver.get("phone")),
        province=receiver.get("province"),
        city=receiver.get("city"),
        district=receiver.get("district"),
        address="***" if receiver.get("address") else None,
    )


def order_out(order: Order, *, pii: bool = False) -> OrderOut:
    return OrderOut(
        id=order.id,
        channel=order.channel,
        order_id=order.external_order_id,
        customer_id=order.customer_id,
        status=OrderStatus(order.status),
        currency=order.currency,
        total_amount=from_fen(order.total_fen),
        paid_amount=from_fen(order.paid_fen),
        refunded_amount=from_fen(order.refunded_fen),
        item_count=order.item_count,
        items=[OrderItemIn(**item) for item in order.items],
        coupon_codes=order.coupon_codes,
        buyer_nick=order.buyer_nick,
        receiver=_masked_receiver(order.receiver, pii),
        placed_at=order.placed_at,
        paid_at=order.paid_at,
        shipped_at=order.shipped_at,
        completed_at=order.completed_at,
        modified_at=order.source_modified_at,
        import_id=order.import_id,
    )


async def apply_refund(
    session: AsyncSession,
    outbox: Outbox,
    shop_id: str,
    *,
    channel: str,
    external_order_id: str,
    refund_id: str,
    amount_fen: int,
    refunded_at: datetime,
) -> tuple[Outcome, Order]:
    """A refund notification (Shopify refunds/create, Taobao RefundSuccess) for a known order."""
    order = await OrderRepository(session).lock_by_source(shop_id, channel, external_order_id)
    if order is None:
        raise Unprocessable(
            f"refund {refund_id} is for order {external_order_id}, which Laoke has not received yet"
        )
    if refund_id in order.refunds:
        return "unchanged", order
    refunds = {**order.refunds, refund_id: amount_fen}
    previous = OrderStatus(order.status)
    refunded_before = order.refunded_fen
    order.refunds = refunds
    order.refunded_fen = min(max(order.refunded_fen, sum(refunds.values())), order.paid_fen)
    if order.paid_fen and order.refunded_fen >= order.paid_fen:
        order.status = OrderStatus.REFUNDED.value
    elif order.refunded_fen:
        order.status = OrderStatus.PARTIALLY_REFUNDED.value
    order.source_modified_at = max(order.source_modified_at, refunded_at)
    await session.flush()
    # A second partial refund keeps the status but changes the money: announce it too.
    if previous != OrderStatus(order.status) or order.refunded_fen != refunded_before:
        await _announce(session, outbox, order, previous=previous)
    return "updated", order
