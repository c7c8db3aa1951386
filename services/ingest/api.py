"""HTTP API of the ingest service (reached through the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from laoke.contracts.orders import OrderStatus
from laoke.kit.db import ReadSessionDep, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound
from laoke.kit.idempotency import IdempotencyKeyHeader, run_idempotent
from laoke.kit.ids import read_time_cursor, time_cursor
from laoke.kit.service import CallerDep, OutboxDep
from services.ingest.identity import forget_shop_settings, shop_settings
from services.ingest.models import ShopSettings, idempotency_keys
from services.ingest.orders import order_out, upsert_order
from services.ingest.repository import CustomerRepository, OrderRepository
from services.ingest.schemas import (
    Channel,
    CustomerLookupOut,
    IngestSettingsIn,
    IngestSettingsOut,
    OrderIn,
    OrderOut,
    OrderPage,
    OrderUpsertOut,
)

router = APIRouter(prefix="/api/v1/orders", tags=["orders"], responses=ERROR_RESPONSES)
customers = APIRouter(prefix="/api/v1/customers", tags=["customers"], responses=ERROR_RESPONSES)
settings_router = APIRouter(prefix="/api/v1/ingest", tags=["ingest settings"], responses=ERROR_RESPONSES)


@router.post(
    "",
    response_model=OrderUpsertOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create or update an order",
    description="Upserts by `(channel, order_id)`. 201 when the order is new, 200 otherwise; an update "
    "older than the stored order (by `modified_at`) is ignored and reported as `stale`. Fields an update "
    "leaves out keep their stored values (items, coupon codes, receiver, earlier times, refunds); fields "
    "it sends replace them, even empty. With an "
    "`Idempotency-Key` header a retry returns the first answer (header `Idempotent-Replayed: true`); the "
    "same key with another body is 422, and a retry while the first is still running is 409.",
    responses={200: {"description": "Existing order updated, unchanged or stale", "model": OrderUpsertOut}},
)
async def post_order(
    body: OrderIn,
    caller: CallerDep,
    session: SessionDep,
    outbox: OutboxDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def work() -> tuple[int, bytes]:
        outcome, order = await upsert_order(session, outbox, caller.shop_id, body)
        answer = OrderUpsertOut(outcome=outcome, order=order_out(order, pii=caller.can("pii")))
        code = status.HTTP_201_CREATED if outcome == "created" else status.HTTP_200_OK
        return code, answer.model_dump_json().encode()

    return await run_idempotent(idempotency_keys, session, caller.shop_id, idempotency_key, body, work)


@router.get(
    "",
    response_model=OrderPage,
    summary="List orders",
    description="Newest first (by `placed_at`), filtered by customer, status and placement time.",
)
async def list_orders(
    caller: CallerDep,
    session: ReadSessionDep,
    customer_id: Annotated[str | None, Query(max_length=32, examples=["cus_3f9a0c1e5b7d2a48"])] = None,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Placed at or after", examples=["2026-11-01T00:00:00+08:00"])
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    after = read_time_cursor(cursor) if cursor is not None else None
    orders = await OrderRepository(session).page(
        caller.shop_id,
        limit=limit + 1,
        customer_id=customer_id,
        status=order_status.value if order_status else None,
        since=since,
        after=after,
    )
    more = len(orders) > limit
    orders = orders[:limit]
    last = orders[-1] if more and orders else None
    return OrderPage(
        items=[order_out(o, pii=caller.can("pii")) for o in orders],
        next_cursor=time_cursor(last.placed_at, last.id) if last else None,
    )


@router.get("/{order_id}", response_model=OrderOut, summary="Get an order by its Laoke id")
async def get_order(order_id: str, caller: CallerDep, session: ReadSessionDep) -> OrderOut:
    order = await OrderRepository(session).get(caller.shop_id, order_id)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return order_out(order, pii=caller.can("pii"))


@customers.get(
    "/lookup",
    response_model=CustomerLookupOut,
    summary="Find a customer by a channel identity",
    description="The Laoke customer id of the buyer a channel knows as `external_id` (Taobao open uid or "
    "nick, Shopify customer id, ...). 404 when this shop has no such buyer.",
)
async def lookup_customer(
    caller: CallerDep,
    session: ReadSessionDep,
    channel: Annotated[Channel, Query(examples=["taobao"])],
    external_id: Annotated[str, Query(min_length=1, max_length=128, examples=["buyer-42"])],
) -> CustomerLookupOut:
    customer_id = await CustomerRepository(session).find(caller.shop_id, channel, external_id)
    if customer_id is None:
        raise NotFound(f"no customer known as {external_id!r} on {channel}")
    return CustomerLookupOut(customer_id=customer_id, channel=channel, external_id=external_id)


@settings_router.get(
    "/settings", response_model=IngestSettingsOut, summary="How orders of this shop are ingested"
)
async def get_settings(caller: CallerDep, session: SessionDep) -> IngestSettingsOut:
    current = await shop_settings(session, caller.shop_id)
    return IngestSettingsOut(merge_by_mobile=current.merge_by_mobile, timezone=current.timezone)


@settings_router.patch(
    "/settings",
    response_model=IngestSettingsOut,
    summary="Change how orders of this shop are ingested",
    description="`merge_by_mobile` applies to orders from now on; customers merged before stay merged.",
)
async def patch_settings(body: IngestSettingsIn, caller: CallerDep, session: SessionDep) -> IngestSettingsOut:
    current = await shop_settings(session, caller.shop_id)
    merged = IngestSettingsOut(
        merge_by_mobile=current.merge_by_mobile if body.merge_by_mobile is None else body.merge_by_mobile,
        timezone=body.timezone or current.timezone,
    )
    await session.execute(
        insert(ShopSettings)
        .values(shop_id=caller.shop_id, **merged.model_dump())
        .on_conflict_do_update(
            index_elements=["shop_id"], set_={**merged.model_dump(), "updated_at": func.now()}
        )
    )
    forget_shop_settings(caller.shop_id)
    return merged
