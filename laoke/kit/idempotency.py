"""`Idempotency-Key` on POST, with Stripe's semantics.

The first request with a key runs and its answer is stored with a hash of its body, in the same
transaction as the work itself, so a stored answer always matches work that happened. A retry with
the same key and body gets the stored answer; the same key with a different body is a client bug
(422); a retry while the first request is still running gets 409 instead of waiting or running twice.
Keys are scoped to the shop and forgotten after 24 hours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import Header, Response
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.errors import Conflict, Unprocessable

KEY_HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)

# The header as an endpoint parameter: `idempotency_key: IdempotencyKeyHeader = None`.
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=KEY_HEADER,
        description="Makes retries safe: the same key and body return the first answer (24 hours)",
        examples=["9f1c2e7a-retry-safe-0001"],
    ),
]

# Two requests with one key must not both run: the second fails fast on a transaction-scoped lock.
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:lock_key, 0))")


def idempotency_keys_table(metadata: MetaData) -> Table:
    """The stored answers to requests sent with an `Idempotency-Key` header, in a service's own schema."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("shop_id", String(64), primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@dataclass(frozen=True)
class _Statements:
    find: Any
    forget_expired: Any
    store: Any


def _statements(table: Table) -> _Statements:
    return _Statements(
        find=select(table.c.request_hash, table.c.status_code, table.c.response).where(
            table.c.shop_id == bindparam("shop_id"),
            table.c.key == bindparam("key"),
            table.c.created_at > func.now() - RETENTION,
        ),
        forget_expired=delete(table).where(
            table.c.shop_id == bindparam("shop_id"),
            table.c.key == bindparam("key"),
            table.c.created_at <= func.now() - RETENTION,
        ),
        store=insert(table),
    )


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: bytes


def request_hash(body: BaseModel) -> str:
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


class IdempotentRequest:
    _built: dict[int, _Statements] = {}  # noqa: RUF012 - statements built once per table

    def __init__(self, table: Table, session: AsyncSession, shop_id: str, key: str, body: BaseModel) -> None:
        if not 1 <= len(key) <= 255:
            raise Unprocessable(f"{KEY_HEADER} must be 1 to 255 characters")
        self.session = session
        self.params = {"shop_id": shop_id, "key": key}
        self.hash = request_hash(body)
        self.lock_key = f"{table.fullname}\x1f{shop_id}\x1f{key}"
        self.sql = self._built.get(id(table)) or self._built.setdefault(id(table), _statements(table))

    async def begin(self) -> StoredResponse | None:
        """The stored answer for a retry, or None when this request should run."""
        locked = await self.session.scalar(_TRY_LOCK, {"lock_key": self.lock_key})
        if not locked:
            raise Conflict(f"a request with this {KEY_HEADER} is still being processed; retry later")
        stored = (await self.session.execute(self.sql.find, self.params)).first()
        if stored is None:
            await self.session.execute(self.sql.forget_expired, self.params)
            return None
        if stored.request_hash != self.hash:
            raise Unprocessable(
                f"this {KEY_HEADER} was used with a different request body; use a new key for a new request"
            )
        return StoredResponse(stored.status_code, stored.response)

    async def finish(self, status_code: int, response: bytes) -> None:
        await self.session.execute(
            self.sql.store,
            {**self.params, "request_hash": self.hash, "status_code": status_code, "response": response},
        )


async def run_idempotent(
    table: Table,
    session: AsyncSession,
    shop_id: str,
    key: str | None,
    body: BaseModel,
    work: Callable[[], Awaitable[tuple[int, bytes]]],
) -> Response:
    """Run `work` (which answers with a status and a JSON body) once per key; a retry gets the stored
    answer with `Idempotent-Replayed: true`. Without a key, `work` simply runs."""
    request = IdempotentRequest(table, session, shop_id, key, body) if key else None
    if request is not None and (stored := await request.begin()) is not None:
        return Response(
            stored.body,
            status_code=stored.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    code, content = await work()
    if request is not None:
        await request.finish(code, content)
    return Response(content, status_code=code, media_type="application/json")
