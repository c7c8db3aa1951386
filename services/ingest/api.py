"""HTTP API of the ingest service (reached through the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.service import CallerDep, OutboxDep
from services.ingest.orders import order_out, upsert_order
from services.ingest.repository import CustomerRepository, OrderRepository
from services.ingest.schemas import Channel, CustomerLookupOut, OrderIn, OrderOut, OrderUpsertOut

router = APIRouter(prefix="/api/v1/orders", tags=["orders"], responses=ERROR_RESPONSES)
customers = APIRouter(prefix="/api/v1/customers", tags=["customers"], responses=ERROR_RESPONSES)


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


@customers.get(
    "/lookup",
    response_model=CustomerLookupOut,
    summary="Find a customer by a channel identity",
    description="The Laoke customer id of the buyer a channel knows as `external_id` (Taobao open uid or "
    "nick, Shopify customer id, ...). 404 when this shop has no such buyer.",
)
async def lookup_customer(
    caller: CallerDep,
    session: SessionDep,
    channel: Annotated[Channel, Query(examples=["taobao"])],
    external_id: Annotated[str, Query(min_length=1, max_length=128, examples=["buyer-42"])],
) -> CustomerLookupOut:
    customer_id = await CustomerRepository(session).find(caller.shop_id, channel, external_id)
    if customer_id is None:
        raise NotFound(f"no customer known as {external_id!r} on {channel}")
    return CustomerLookupOut(customer_id=customer_id, channel=channel, external_id=external_id)
