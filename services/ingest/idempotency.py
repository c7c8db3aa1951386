"""`Idempotency-Key` on POST, with Stripe's semantics.

The first request with a key runs and its answer is stored with a hash of its body, in the same
transaction as the work itself, so a stored answer always matches work that happened. A retry with
the same key and body gets the stored answer; the same key with a different body is a client bug
(422); a retry while the first request is still running gets 409 instead of waiting or running twice.
Keys are scoped to the shop and forgotten after 24 hours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import orjson
from pydantic import BaseModel
from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.errors import Conflict, Unprocessable
from services.ingest.models import IdempotencyKey

KEY_HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)

_table = IdempotencyKey.__table__
# Two requests with one key must not both run: the second fails fast on a transaction-scoped lock.
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:lock_key, 0))")
_FIND = select(_table.c.request_hash, _table.c.status_code, _table.c.response).where(
    _table.c.shop_id == bindparam("shop_id"),
    _table.c.key == bindparam("key"),
    _table.c.created_at > func.now() - RETENTION,
)
_FORGET_EXPIRED = delete(_table).where(
    _table.c.shop_id == bindparam("shop_id"),
    _table.c.key == bindparam("key"),
    _table.c.created_at <= func.now() - RETENTION,
)
_STORE = insert(_table)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: bytes


def request_hash(body: BaseModel) -> str:
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


class IdempotentRequest:
    def __init__(self, session: AsyncSession, shop_id: str, key: str, body: BaseModel) -> None:
        if not 1 <= len(key) <= 255:
            raise Unprocessable(f"{KEY_HEADER} must be 1 to 255 characters")
        self.session = session
        self.params = {"shop_id": shop_id, "key": key}
        self.hash = request_hash(body)

    async def begin(self) -> StoredResponse | None:
        """The stored answer for a retry, or None when this request should run."""
        lock_key = f"{self.params['shop_id']}\x1f{self.params['key']}"
        locked = await self.session.scalar(_TRY_LOCK, {"lock_key": lock_key})
        if not locked:
            raise Conflict(f"a request with this {KEY_HEADER} is still being processed; retry later")
        stored = (await self.session.execute(_FIND, self.params)).first()
        if stored is None:
            await self.session.execute(_FORGET_EXPIRED, self.params)
            return None
        if stored.request_hash != self.hash:
            raise Unprocessable(
                f"this {KEY_HEADER} was used with a different request body; use a new key for a new request"
            )
        return StoredResponse(stored.status_code, stored.response)

    async def finish(self, status_code: int, response: bytes) -> None:
        await self.session.execute(
            _STORE,
            {**self.params, "request_hash": self.hash, "status_code": status_code, "response": response},
        )
