"""The gateway's own API: shops (admin), API keys, and who-am-I."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import select

from gateway.auth import AdminDep, PrincipalDep, create_key, load_shop, revoke_key
from gateway.models import ApiKey, Shop
from gateway.schemas import (
    ALL_SCOPES,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    Me,
    ShopCreate,
    ShopCreated,
    ShopOut,
    WebhookSecretRotated,
)
from laoke.contracts.topics import Topic
from laoke.kit.db import SessionDep
from laoke.kit.errors import ERROR_RESPONSES, Forbidden
from laoke.kit.ids import new_time_ordered_id
from laoke.kit.service import OutboxDep

admin = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=ERROR_RESPONSES)
keys = APIRouter(prefix="/api/v1", tags=["keys"], responses=ERROR_RESPONSES)


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        scopes=list(key.scopes),
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@admin.post(
    "/shops",
    response_model=ShopCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a shop (admin token)",
    description="Returns the shop's first API key (every scope) and its webhook secret, each shown once.",
)
async def create_shop(body: ShopCreate, _: AdminDep, session: SessionDep, outbox: OutboxDep) -> ShopCreated:
    shop = Shop(
        id=new_time_ordered_id("shp"),
        name=body.name,
        timezone=body.timezone,
        currency=body.currency,
        webhook_secret=secrets.token_urlsafe(32),
    )
    session.add(shop)
    await session.flush()
    _, full_key = await create_key(session, shop.id, "default", list(ALL_SCOPES))
    await outbox.add(
        session,
        topic=Topic.SHOPS,
        event_type="shop.created",
        shop_id=shop.id,
        key=f"{shop.id}:shop",
        payload={"shop_id": shop.id, "name": shop.name, "timezone": shop.timezone, "currency": shop.currency},
    )
    return ShopCreated(
        shop_id=shop.id,
        name=shop.name,
        timezone=shop.timezone,
        currency=shop.currency,
        api_key=full_key,
        webhook_secret=shop.webhook_secret,
    )


@admin.get("/shops", response_model=list[ShopOut], summary="List shops (admin token)")
async def list_shops(_: AdminDep, session: SessionDep) -> list[ShopOut]:
    shops = (await session.scalars(select(Shop).order_by(Shop.created_at))).all()
    return [
        ShopOut(shop_id=s.id, name=s.name, timezone=s.timezone, currency=s.currency, created_at=s.created_at)
        for s in shops
    ]


@keys.get("/me", response_model=Me, summary="The shop and key behind this request")
async def me(principal: PrincipalDep, session: SessionDep) -> Me:
    shop = await load_shop(session, principal.shop_id)
    key = await session.get(ApiKey, principal.key_id)
    assert key is not None
    return Me(
        shop_id=shop.id,
        shop_name=shop.name,
        timezone=shop.timezone,
        currency=shop.currency,
        key=_key_out(key),
    )


@keys.post(
    "/keys",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (scope: keys)",
    description="A key can only grant scopes the creating key has. The full key is shown once.",
)
async def create_api_key(body: KeyCreate, principal: PrincipalDep, session: SessionDep) -> KeyCreated:
    principal.require("keys")
    beyond = set(body.scopes) - principal.scopes
    if beyond:
        raise Forbidden(f"cannot grant scopes this key does not have: {', '.join(sorted(beyond))}")
    key, full_key = await create_key(session, principal.shop_id, body.name, list(body.scopes))
    return KeyCreated(**_key_out(key).model_dump(), api_key=full_key)


@keys.get("/keys", response_model=KeyList, summary="List the shop's API keys (scope: keys)")
async def list_api_keys(principal: PrincipalDep, session: SessionDep) -> KeyList:
    principal.require("keys")
    rows = (
        await session.scalars(
            select(ApiKey).where(ApiKey.shop_id == principal.shop_id).order_by(ApiKey.created_at)
        )
    ).all()
    return KeyList(items=[_key_out(k) for k in rows])


@keys.delete(
    "/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key (scope: keys)",
    response_class=Response,
)
async def delete_api_key(
    key_id: str, principal: PrincipalDep, session: SessionDep, request: Request
) -> Response:
    principal.require("keys")
    await revoke_key(session, principal.shop_id, key_id)
    request.app.state.keys.forget(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@keys.post(
    "/webhook-secret/rotate",
    response_model=WebhookSecretRotated,
    summary="Rotate the shop's webhook secret (scope: keys)",
    description="Returns the new secret, shown once. The previous secret keeps verifying webhooks for "
    "`grace_hours` (default 24) so marketplaces and integrations can switch over; during that time a "
    "sender may sign with both (`X-Laoke-Signature: t=...,v1=<new>,v1=<old>`).",
)
async def rotate_webhook_secret(
    principal: PrincipalDep,
    session: SessionDep,
    request: Request,
    grace_hours: Annotated[int, Query(ge=0, le=168)] = 24,
) -> WebhookSecretRotated:
    principal.require("keys")
    shop = await load_shop(session, principal.shop_id)
    until = datetime.now(UTC) + timedelta(hours=grace_hours)
    shop.previous_webhook_secret = shop.webhook_secret
    shop.previous_webhook_secret_until = until
    shop.webhook_secret = secrets.token_urlsafe(32)
    await session.flush()
    request.app.state.webhook_secrets.forget(shop.id)
    return WebhookSecretRotated(webhook_secret=shop.webhook_secret, previous_valid_until=until)
