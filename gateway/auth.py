"""API keys: issue, verify, revoke, and the admin token.

A key reads `lk_<id>_<secret>`: the id finds the row, and only SHA-256(secret) is stored. A plain
hash (not bcrypt/argon2) is the right tool here because the secret is 192 random bits, not a
password: nothing can be guessed, and verification must cost microseconds on every request. Verified
keys are cached per replica for `key_cache_seconds`; a revoke clears this replica's cache at once and
others within that window.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import ApiKey, Shop
from laoke.kit.cache import TtlCache
from laoke.kit.db import Database
from laoke.kit.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized

KEY_PREFIX = "lk"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a key of a shop."""

    key_id: str
    key_name: str
    shop_id: str
    scopes: frozenset[str]
    secret_hash: str

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key() -> tuple[str, str, str]:
    """A new key: (key id, full key to show once, hash to store)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}", _hash(secret)


def parse_key(raw: str) -> tuple[str, str] | None:
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class KeyStore:
    def __init__(self, db: Database, cache_seconds: float) -> None:
        self.db = db
        self._cache: TtlCache[Principal | None] = TtlCache(cache_seconds)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <api key>")
        scheme, _, token = authorization.partition(" ")
        parsed = parse_key(token.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            raise Unauthorized("malformed API key; expected Authorization: Bearer lk_<id>_<secret>")
        key_id, secret = parsed
        principal = await self._load(key_id)
        if principal is None or not hmac.compare_digest(principal.secret_hash, _hash(secret)):
            raise Unauthorized("invalid or revoked API key")
        return principal

    async def _load(self, key_id: str) -> Principal | None:
        hit, cached = self._cache.get(key_id)
        if hit:
            return cached
        try:
            async with self.db.transaction() as session:
                row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id))
        except (OSError, SQLAlchemyError) as exc:
            raise ServiceUnavailable("authentication is temporarily unavailable") from exc
        principal = (
            None
            if row is None or row.revoked_at is not None
            else Principal(row.id, row.name, row.shop_id, frozenset(row.scopes), row.secret_hash)
        )
        return self._cache.put(key_id, principal)

    def forget(self, key_id: str) -> None:
        self._cache.forget(key_id)


class WebhookSecrets:
    """Each shop's valid webhook secrets, for the gateway to hand to ingest with a webhook it forwards.

    Ingest verifies marketplace signatures itself (each marketplace has its own scheme) but secrets live
    with the shop, here; they travel inside the signed internal credential, never through Kafka.
    """

    def __init__(self, db: Database, cache_seconds: float) -> None:
        self.db = db
        self._cache: TtlCache[str | None] = TtlCache(cache_seconds)

    async def for_shop(self, shop_id: str) -> str | None:
        """Comma-separated current (and unexpired previous) secret; None for an unknown shop."""
        hit, cached = self._cache.get(shop_id)
        if hit:
            return cached
        try:
            async with self.db.transaction() as session:
                shop = await session.get(Shop, shop_id)
        except (OSError, SQLAlchemyError) as exc:
            raise ServiceUnavailable("webhook verification is temporarily unavailable") from exc
        secrets_ = None
        if shop is not None:
            valid = [shop.webhook_secret]
            until = shop.previous_webhook_secret_until
            if shop.previous_webhook_secret and until is not None and until > datetime.now(UTC):
                valid.append(shop.previous_webhook_secret)
            secrets_ = ",".join(valid)
        return self._cache.put(shop_id, secrets_)

    def forget(self, shop_id: str) -> None:
        self._cache.forget(shop_id)


async def create_key(session: AsyncSession, shop_id: str, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    key_id, full_key, secret_hash = issue_key()
    key = ApiKey(id=key_id, shop_id=shop_id, name=name, secret_hash=secret_hash, scopes=sorted(set(scopes)))
    session.add(key)
    await session.flush()
    await session.refresh(key)
    return key, full_key


async def revoke_key(session: AsyncSession, shop_id: str, key_id: str) -> None:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.shop_id == shop_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"API key {key_id} not found")


async def load_shop(session: AsyncSession, shop_id: str) -> Shop:
    shop = await session.get(Shop, shop_id)
    if shop is None:
        raise NotFound("shop not found")
    return shop


async def _principal(request: Request) -> Principal:
    principal: Principal = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    request.app.state.buckets.enforce(principal.key_id)
    return principal


async def _admin(request: Request) -> None:
    expected = request.app.state.settings.admin_token
    if not expected:
        raise ServiceUnavailable("the admin API is disabled: LAOKE_ADMIN_TOKEN is not set")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("admin token required")


PrincipalDep = Annotated[Principal, Depends(_principal)]
AdminDep = Annotated[None, Depends(_admin)]
