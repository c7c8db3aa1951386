"""Read sessions (`ReadSessionDep`): statements outside a transaction block on the shared pool, which
must never leak that mode to the write sessions after them, and which refuse ORM changes that would
otherwise be lost."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from laoke.kit.db import Database, WriteInReadSession, _read_session
from laoke.kit.settings import ServiceSettings
from laoke.testing.plugin import Isolated
from services.ingest.models import ShopSettings


def _database(isolated: Isolated) -> Database:
    return Database(
        ServiceSettings(
            service_name="read-session-test",
            database_url=isolated.database_url,
            kafka_bootstrap_servers=isolated.broker.bootstrap_servers,
            db_pool_size=1,  # one pooled connection: every session below gets the same one
        )
    )


async def _transaction_starts(session: AsyncSession) -> list[datetime]:
    """`now()` of two statements 20 ms apart: the start of the transaction each ran in."""
    starts = []
    for _ in range(2):
        starts.append(await session.scalar(text("SELECT now()")))
        await asyncio.sleep(0.02)
    return starts


async def test_a_read_session_runs_each_statement_on_its_own_and_leaves_the_pool_transactional(
    isolated: Isolated,
) -> None:
    db = _database(isolated)
    try:
        async with db.reads() as session:
            pid_read = await session.scalar(text("SELECT pg_backend_pid()"))
            first, second = await _transaction_starts(session)
        assert first != second  # no BEGIN: each statement was a transaction of its own

        async with db.transaction() as session:
            pid_write = await session.scalar(text("SELECT pg_backend_pid()"))
            first, second = await _transaction_starts(session)
        assert pid_write == pid_read  # the same pooled connection …
        assert first == second  # … back inside one transaction for a unit of work
    finally:
        await db.dispose()


async def test_a_write_through_a_read_session_fails_the_request_instead_of_vanishing(
    isolated: Isolated,
) -> None:
    db = _database(isolated)
    app = FastAPI()
    app.state.db = db
    try:
        session_of_request = _read_session(Request({"type": "http", "app": app}))
        session = await anext(session_of_request)
        session.add(ShopSettings(shop_id="shp_read_only"))  # never flushed: there is no commit to come
        with pytest.raises(WriteInReadSession):
            await anext(session_of_request)
    finally:
        await db.dispose()
