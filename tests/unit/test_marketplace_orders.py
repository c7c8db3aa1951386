"""A marketplace order that completes after part of it was refunded is still completed: loyalty credits
what the buyer kept only once it sees the completion time."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from laoke.contracts.orders import OrderStatus
from services.ingest.marketplaces import shopify_order, taobao_trade, woocommerce_order

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_a_finished_taobao_trade_with_a_refunded_sub_order_is_completed() -> None:
    trade = fixture("taobao_trade.json") | {"status": "TRADE_FINISHED", "end_time": "2026-11-25 10:00:00"}
    trade["orders"]["order"][1] |= {"refund_status": "SUCCESS", "refund_fee": "16.00"}
    order = taobao_trade(trade, ZoneInfo("Asia/Shanghai"))
    assert (order.status, order.refunded_amount) == (OrderStatus.PARTIALLY_REFUNDED, Decimal("16.00"))
    assert order.completed_at is not None and order.completed_at.isoformat() == "2026-11-25T10:00:00+08:00"
    waiting = taobao_trade(trade | {"status": "WAIT_BUYER_CONFIRM_GOODS"}, ZoneInfo("Asia/Shanghai"))
    assert (waiting.status, waiting.completed_at) == (OrderStatus.PARTIALLY_REFUNDED, None)
    for sub_order in trade["orders"]["order"]:
        sub_order |= {"refund_status": "SUCCESS", "refund_fee": None}
    everything = taobao_trade(trade, ZoneInfo("Asia/Shanghai"))
    assert (everything.status, everything.refunded_amount) == (
        OrderStatus.REFUNDED,
        Decimal(trade["payment"]),
    )


def test_a_fulfilled_and_closed_shopify_order_refunded_in_part_is_completed() -> None:
    refund = {"id": "r-1", "transactions": [{"kind": "refund", "status": "success", "amount": "5.00"}]}
    payload = fixture("shopify_order.json") | {
        "financial_status": "partially_refunded",
        "fulfillment_status": "fulfilled",
        "closed_at": "2026-11-28T10:00:00+08:00",
        "refunds": [refund],
    }
    order = shopify_order(payload)
    assert order.status == OrderStatus.PARTIALLY_REFUNDED and order.refunded_amount == Decimal("5.00")
    assert order.completed_at is not None and order.completed_at.isoformat() == "2026-11-28T10:00:00+08:00"
    open_order = shopify_order(payload | {"closed_at": None})
    assert open_order.completed_at is None


def test_a_completed_woocommerce_order_with_a_refund_is_completed() -> None:
    payload = fixture("woocommerce_order.json") | {
        "status": "completed",
        "date_completed_gmt": "2026-11-28T02:00:00",
        "refunds": [{"id": "77", "total": "-5.00"}],
    }
    order = woocommerce_order(payload)
    assert order.status == OrderStatus.PARTIALLY_REFUNDED and order.refunded_amount == Decimal("5.00")
    assert order.completed_at is not None and order.completed_at.isoformat() == "2026-11-28T02:00:00+00:00"
    processing = woocommerce_order(payload | {"status": "processing"})
    assert processing.completed_at is None
