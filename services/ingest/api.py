"""HTTP API of the ingest service (reached through the gateway)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.service import CallerDep, OutboxDep
from services.ingest.orders import order_out, upsert_order
from services.ingest.repository import OrderRepository
from services.ingest.schemas import OrderIn, OrderOut, OrderUpsertOut

router = APIRouter(prefix="/api/v1/orders", tags=["orders"], responses=ERROR_RESPONSES)


@router.post(
    "",
    response_model=OrderUpsertOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create or update an order",
    description="Upserts by `(channel, order_id)`. 201 when the order is new, 200 otherwise; an update "
    "older than the stored order (by `modified_at`) is ignored and reported as `stale`.",
    responses={200: {"description": "Existing order updated, unchanged or stale", "model": OrderUpsertOut}},
)
async def post_order(
    body: OrderIn, caller: CallerDep, session: SessionDep, outbox: OutboxDep, response: Response
) -> OrderUpsertOut:
    outcome, order = await upsert_order(session, outbox, caller.shop_id, body)
    if outcome != "created":
        response.status_code = status.HTTP_200_OK
    return OrderUpsertOut(outcome=outcome, order=order_out(order))


@router.get("/{order_id}", response_model=OrderOut, summary="Get an order by its Laoke id")
async def get_order(order_id: str, caller: CallerDep, session: SessionDep) -> OrderOut:
    order = await OrderRepository(session).get(caller.shop_id, order_id)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return order_out(order)
