"""Points rules. Earning: 1 point per whole yuan actually kept by the shop on a completed order."""

from __future__ import annotations

from laoke.contracts.orders import OrderEventPayload


def points_for_order(order: OrderEventPayload) -> int:
    return max(order.paid_fen - order.refunded_fen, 0) // 100
