"""Marketplace webhooks: verify the sender's signature on the raw body, drop redeliveries, upsert.

No API key: the gateway forwards these unauthenticated paths with the shop's webhook secrets inside
its signed internal credential, and each scheme is checked here. A notification is processed at most
once per sender delivery id (recorded in the same transaction as the order change), and anything
refused or unusable is kept raw in `webhook_failures` for the shop to inspect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.context import WEBHOOK_SECRETS_HEADER
from laoke.kit.db import Database, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, LaokeError, Unauthorized, Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.money import to_fen
from laoke.kit.outbox import Outbox
from laoke.kit.service import CallerDep
from services.ingest import marketplaces
from services.ingest import webhook_examples as examples
from services.ingest.identity import shop_settings
from services.ingest.models import WebhookDelivery, WebhookFailure
from services.ingest.orders import apply_refund, upsert_order
from services.ingest.schemas import OrderIn
from services.ingest.signatures import LAOKE_SIGNATURE_HEADER, verify_base64_hmac, verify_laoke

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)
failures = APIRouter(prefix="/api/v1/ingest", tags=["webhooks"], responses=ERROR_RESPONSES)

DELIVERY_HEADER = "X-Laoke-Delivery-Id"
_KEPT_HEADERS = ("content-type", "user-agent", "x-shopify-", "x-wc-", "x-laoke-signature", "x-laoke-delivery")

ShopId = Annotated[str, Path(max_length=64, description="The shop's id, from its webhook URL")]


class WebhookOut(BaseModel):
    outcome: Literal["created", "updated", "unchanged", "stale", "duplicate", "ignored"] = Field(
        description="`duplicate`: this delivery id was processed before; "
        "`ignored`: a topic Laoke does not use"
    )
    order_id: str | None = Field(default=None, examples=["ord_5d1f0c2b9a7e4c31"])
    delivery_id: str | None = None


class WebhookFailureOut(BaseModel):
    id: str
    source: str
    topic: str | None
    delivery_id: str | None
    status_code: int
    error: str
    headers: dict[str, str]
    body: str = Field(description="The raw body as received (UTF-8, invalid bytes replaced)")
    received_at: Any


class WebhookFailureList(BaseModel):
    items: list[WebhookFailureOut]


_RECORD_DELIVERY = (
    insert(WebhookDelivery.__table__)
    .on_conflict_do_nothing()
    .returning(WebhookDelivery.__table__.c.delivery_id)
)

Apply = Callable[[AsyncSession, Outbox], Awaitable[tuple[str, str | None]]]


class Delivery:
    """One received notification and what the endpoint learns about it while handling it."""

    def __init__(self, request: Request, shop_id: str, source: str, body: bytes) -> None:
        self.request = request
        self.shop_id = shop_id
        self.source = source
        self.body = body
        self.topic: str | None = None
        self.delivery_id: str | None = None

    @property
    def secrets(self) -> list[str]:
        return [s for s in self.request.headers.get(WEBHOOK_SECRETS_HEADER, "").split(",") if s]

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def json(self) -> dict[str, Any]:
        try:
            payload = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise Unprocessable(f"body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise Unprocessable("body must be a JSON object")
        return payload

    async def process(self, apply: Apply) -> WebhookOut:
        """Apply the notification and record its delivery id in one transaction. The id is recorded
        after the work, in one statement: a redelivery (rare) finds it taken and rolls its own work
        back; a concurrent twin waits on the first's locks and ends the same way."""
        state = self.request.app.state
        db: Database = state.db
        async with db.sessionmaker() as session:
            transaction = await session.begin()
            try:
                outcome, order_id = await apply(session, state.outbox)
                if self.delivery_id is not None:
                    recorded = await session.scalar(
                        _RECORD_DELIVERY,
                        {
                            "shop_id": self.shop_id,
                            "source": self.source,
                            "delivery_id": self.delivery_id,
                            "topic": self.topic or "",
                            "order_id": order_id,
                        },
                    )
                    if recorded is None:
                        await transaction.rollback()
                        return WebhookOut(outcome="duplicate", delivery_id=self.delivery_id)
                await transaction.commit()
            except BaseException:
                await transaction.rollback()
                raise
        return WebhookOut(outcome=outcome, order_id=order_id, delivery_id=self.delivery_id)  # type: ignore[arg-type]

    async def keep_failure(self, exc: LaokeError) -> None:
        headers = {
            k: v for k, v in self.request.headers.items() if any(k.startswith(p) for p in _KEPT_HEADERS)
        }
        db: Database = self.request.app.state.db
        async with db.transaction() as session:
            session.add(
                WebhookFailure(
                    id=new_id("whf"),
                    shop_id=self.shop_id,
                    source=self.source,
                    topic=self.topic,
                    delivery_id=self.delivery_id,
                    status_code=exc.status_code,
                    error=exc.detail,
                    headers=headers,
                    body=self.body,
                )
            )


async def _handle(delivery: Delivery, work: Callable[[], Awaitable[WebhookOut]]) -> WebhookOut:
    try:
        try:
            return await work()
        except ValidationError as exc:
            raise Unprocessable(_describe(exc)) from exc
        except ValueError as exc:
            raise Unprocessable(str(exc)) from exc
    except (Unauthorized, Unprocessable) as exc:
        await delivery.keep_failure(exc)
        raise


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _check_shop(caller_shop: str, shop_id: str) -> None:
    # The gateway signs the shop it looked the secrets up for; the path must agree.
    if caller_shop != shop_id:
        raise Unauthorized("webhook signature cannot be verified")


def _upsert(shop_id: str, order: OrderIn) -> Apply:
    async def apply(session: AsyncSession, outbox: Outbox) -> tuple[str, str | None]:
        outcome, stored = await upsert_order(session, outbox, shop_id, order)
        return outcome, stored.id

    return apply


def _refund(shop_id: str, channel: str, order_id: str, refund_id: str, amount: Any, at: Any) -> Apply:
    async def apply(session: AsyncSession, outbox: Outbox) -> tuple[str, str | None]:
        outcome, stored = await apply_refund(
            session,
            outbox,
            shop_id,
            channel=channel,
            external_order_id=order_id,
            refund_id=refund_id,
            amount_fen=to_fen(amount),
            refunded_at=at,
        )
        return outcome, stored.id

    return apply


async def _ignored(_: AsyncSession, __: Outbox) -> tuple[str, str | None]:
    return "ignored", None


def _documented(example: dict[str, Any], *headers: tuple[str, str, str]) -> dict[str, Any]:
    """OpenAPI for an endpoint that reads its raw body: the body's shape by example, and its headers."""
    return {
        "requestBody": {"required": True, "content": {"application/json": {"example": example}}},
        "parameters": [
            {"name": name, "in": "header", "required": False, "description": text, "example": value}
            for name, text, value in headers
        ],
    }


_LAOKE_SIGNATURE = (
    LAOKE_SIGNATURE_HEADER,
    'HMAC-SHA256 of "<t>.<raw body>" with the shop\'s webhook secret',
    "t=1795138200,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
)
_DELIVERY = (DELIVERY_HEADER, "Your id for this notification; a redelivery with it is ignored", "push-0001")


SHOPIFY_ORDER_TOPICS = frozenset(
    {
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/fulfilled",
        "orders/partially_fulfilled",
        "orders/edited",
    }
)


@router.post(
    "/shopify/{shop_id}",
    response_model=WebhookOut,
    summary="Shopify order webhooks",
    description="Shopify's scheme: `X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body with the "
    "shop's webhook secret. Topics (`X-Shopify-Topic`) orders/create, orders/updated, orders/paid, "
    "orders/cancelled, orders/fulfilled and refunds/create; others are acknowledged and ignored. "
    "Redeliveries are recognised by `X-Shopify-Event-Id` (or `X-Shopify-Webhook-Id`).",
    openapi_extra=_documented(
        examples.SHOPIFY_EXAMPLE,
        (
            "X-Shopify-Hmac-Sha256",
            "base64 HMAC-SHA256 of the raw body",
            "XWmrwMey6OsLMeiZKwP4FppHH3cmAiiJJAweH5Jo4bM=",
        ),
        ("X-Shopify-Topic", "orders/create, orders/updated, ..., refunds/create", "orders/paid"),
        ("X-Shopify-Event-Id", "Shopify's id of this event", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
    ),
)
async def shopify_webhook(shop_id: ShopId, request: Request, caller: CallerDep) -> WebhookOut:
    delivery = Delivery(request, shop_id, "shopify", await request.body())

    async def work() -> WebhookOut:
        _check_shop(caller.shop_id, shop_id)
        verify_base64_hmac(
            delivery.body, delivery.header("x-shopify-hmac-sha256"), delivery.secrets, "X-Shopify-Hmac-Sha256"
        )
        delivery.topic = delivery.header("x-shopify-topic")
        delivery.delivery_id = delivery.header("x-shopify-event-id") or delivery.header(
            "x-shopify-webhook-id"
        )
        payload = delivery.json()
        if delivery.topic in SHOPIFY_ORDER_TOPICS:
            return await delivery.process(_upsert(shop_id, marketplaces.shopify_order(payload)))
        if delivery.topic == "refunds/create":
            refund = marketplaces.ShopifyRefund.model_validate(payload)
            if not refund.order_id:
                raise Unprocessable("refund has no order_id")
            at = refund.created_at
            if at is None:
                raise Unprocessable("refund has no created_at")
            return await delivery.process(
                _refund(shop_id, "shopify", refund.order_id, refund.id, refund.amount, at)
            )
        return await delivery.process(_ignored)

    return await _handle(delivery, work)


@router.post(
    "/woocommerce/{shop_id}",
    response_model=WebhookOut,
    summary="WooCommerce order webhooks",
    description="WooCommerce's scheme: `X-WC-Webhook-Signature` = base64 HMAC-SHA256 of the raw body with "
    "the webhook's secret (set it to the shop's webhook secret). Topics order.created and order.updated; "
    "redeliveries are recognised by `X-WC-Webhook-Delivery-ID`. WooCommerce's ping on webhook creation "
    "(`webhook_id=<n>`) is acknowledged.",
    openapi_extra=_documented(
        examples.WOO_EXAMPLE,
        ("X-WC-Webhook-Signature", "base64 HMAC-SHA256 of the raw body", "8Jk1...="),
        ("X-WC-Webhook-Topic", "order.created or order.updated", "order.created"),
        ("X-WC-Webhook-Delivery-ID", "WooCommerce's id of this delivery", "d5f8c8a0e2"),
    ),
)
async def woocommerce_webhook(shop_id: ShopId, request: Request, caller: CallerDep) -> WebhookOut:
    delivery = Delivery(request, shop_id, "woocommerce", await request.body())

    async def work() -> WebhookOut:
        _check_shop(caller.shop_id, shop_id)
        if delivery.body.startswith(b"webhook_id=") and "x-wc-webhook-signature" not in request.headers:
            return WebhookOut(outcome="ignored")  # the unsigned ping WooCommerce sends when a hook is saved
        verify_base64_hmac(
            delivery.body,
            delivery.header("x-wc-webhook-signature"),
            delivery.secrets,
            "X-WC-Webhook-Signature",
        )
        delivery.topic = delivery.header("x-wc-webhook-topic")
        delivery.delivery_id = delivery.header("x-wc-webhook-delivery-id")
        payload = delivery.json()
        if delivery.topic not in ("order.created", "order.updated", "order.restored"):
            return await delivery.process(_ignored)
        return await delivery.process(_upsert(shop_id, marketplaces.woocommerce_order(payload)))

    return await _handle(delivery, work)


@router.post(
    "/taobao/{shop_id}",
    response_model=WebhookOut,
    summary="Taobao / Tmall trade pushes",
    description="A trade as TOP returns it (`tid`, `buyer_nick`, `buyer_open_uid`, `payment`, `status`, "
    "shop-local times, `receiver_*`, `orders`), bare or as a TMC message `{id, topic, content}` "
    "(trade topics, and `taobao_refund_RefundSuccess`). Signed with the Laoke scheme: "
    '`X-Laoke-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, refused when older '
    "than 300 s. Redeliveries are recognised by the TMC message id, `X-Laoke-Delivery-Id`, or the trade's "
    "`tid` and `modified` time. `?channel=tmall` files the orders under Tmall.",
    openapi_extra=_documented(examples.TAOBAO_EXAMPLE, _LAOKE_SIGNATURE, _DELIVERY),
)
async def taobao_webhook(
    shop_id: ShopId,
    request: Request,
    caller: CallerDep,
    channel: Annotated[Literal["taobao", "tmall"], Query()] = "taobao",
) -> WebhookOut:
    delivery = Delivery(request, shop_id, "taobao", await request.body())
    async with request.app.state.db.sessionmaker() as session:  # no query at all when cached
        zone = ZoneInfo((await shop_settings(session, shop_id)).timezone)

    async def work() -> WebhookOut:
        _check_shop(caller.shop_id, shop_id)
        verify_laoke(delivery.body, delivery.header(LAOKE_SIGNATURE_HEADER), delivery.secrets)
        payload = delivery.json()
        if "topic" in payload and "content" in payload:
            message = marketplaces.TmcMessage.model_validate(payload)
            delivery.topic, delivery.delivery_id = message.topic, message.id
            if message.topic == "taobao_refund_RefundSuccess":
                refund = marketplaces.TaobaoRefund.model_validate(message.content)
                at = marketplaces.taobao_time(refund.modified, zone) or datetime.now(UTC)
                return await delivery.process(
                    _refund(
                        shop_id, channel, refund.tid, refund.oid or refund.refund_id, refund.refund_fee, at
                    )
                )
            if not message.topic.startswith("taobao_trade_"):
                return await delivery.process(_ignored)
            payload = message.content
        else:
            delivery.topic = "trade"
            delivery.delivery_id = delivery.header(DELIVERY_HEADER) or (
                f"{payload.get('tid')}@{payload.get('modified')}" if payload.get("modified") else None
            )
        return await delivery.process(_upsert(shop_id, marketplaces.taobao_trade(payload, zone, channel)))

    return await _handle(delivery, work)


@router.post(
    "/generic/{shop_id}",
    response_model=WebhookOut,
    summary="Laoke order JSON, pushed by any system",
    description="The body is the same order JSON as `POST /api/v1/orders`, signed with the Laoke scheme "
    "(`X-Laoke-Signature`, see the Taobao webhook). Redeliveries are recognised by `X-Laoke-Delivery-Id`, "
    "or else by the body itself.",
    openapi_extra=_documented(examples.GENERIC_EXAMPLE, _LAOKE_SIGNATURE, _DELIVERY),
)
async def generic_webhook(shop_id: ShopId, request: Request, caller: CallerDep) -> WebhookOut:
    delivery = Delivery(request, shop_id, "generic", await request.body())

    async def work() -> WebhookOut:
        _check_shop(caller.shop_id, shop_id)
        verify_laoke(delivery.body, delivery.header(LAOKE_SIGNATURE_HEADER), delivery.secrets)
        delivery.topic = "order"
        delivery.delivery_id = delivery.header(DELIVERY_HEADER) or hashlib.sha256(delivery.body).hexdigest()
        order = OrderIn.model_validate(delivery.json())
        return await delivery.process(_upsert(shop_id, order))

    return await _handle(delivery, work)


@failures.get(
    "/webhook-failures",
    response_model=WebhookFailureList,
    summary="Webhooks that were refused or could not be used",
    description="Newest first, with the raw body and the sender's headers, for debugging an integration.",
)
async def list_webhook_failures(
    caller: CallerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> WebhookFailureList:
    rows = await session.scalars(
        select(WebhookFailure)
        .where(WebhookFailure.shop_id == caller.shop_id)
        .order_by(WebhookFailure.received_at.desc())
        .limit(limit)
    )
    return WebhookFailureList(
        items=[
            WebhookFailureOut(
                id=r.id,
                source=r.source,
                topic=r.topic,
                delivery_id=r.delivery_id,
                status_code=r.status_code,
                error=r.error,
                headers=r.headers,
                body=r.body.decode("utf-8", "replace"),
                received_at=r.received_at,
            )
            for r in rows
        ]
    )
