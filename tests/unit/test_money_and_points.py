from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from laoke.contracts.orders import OrderEventPayload, OrderStatus
from laoke.kit.money import from_fen, to_fen
from services.loyalty.ledger import points_for_order


def test_yuan_and_fen_convert_exactly() -> None:
    assert to_fen(Decimal("128.50")) == 12850
    assert to_fen(Decimal("0.01")) == 1
    assert from_fen(12850) == Decimal("128.50")
    assert from_fen(1) == Decimal("0.01")


def order(paid_fen: int, refunded_fen: int = 0) -> OrderEventPayload:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    return OrderEventPayload(
        order_id="ord_1",
        customer_id="cus_1",
        channel="api",
        external_order_id="T1",
        status=OrderStatus.COMPLETED,
        total_fen=paid_fen,
        paid_fen=paid_fen,
        refunded_fen=refunded_fen,
        placed_at=now,
        source_modified_at=now,
    )


def test_one_point_per_whole_yuan_kept() -> None:
    assert points_for_order(order(12850)) == 128
    assert points_for_order(order(99)) == 0
    assert points_for_order(order(20000, refunded_fen=5050)) == 149
    assert points_for_order(order(100, refunded_fen=200)) == 0
