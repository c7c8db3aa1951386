"""Database plumbing: one async engine per process, one session per request or per consumed event.

The request session commits when the endpoint returns and before the response is sent, so a client
never sees a 2xx for work that was then rolled back; any exception rolls everything back. An endpoint
that only reads takes `ReadSessionDep` instead: its statements run without `BEGIN` and `COMMIT`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import CursorResult, MetaData, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool

from laoke.kit.jsonutil import dumps_text, loads
from laoke.kit.settings import ServiceSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def as_arrays(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> dict[str, list[Any]]:
    """Rows as one list per column, for a statement that takes them through
    `unnest(CAST(:name AS type[]), …)`: one constant statement whatever the number of rows, where a
    multi-row `VALUES` is compiled again for each count and an executemany costs a parameter set per
    row in Python."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    lists = list(columns.values())
    for row in rows:
        for values, value in zip(lists, row, strict=True):
            values.append(value)
    return columns


UNIQUE_VIOLATION = "23505"


async def insert_plainly(
    session: AsyncSession, statement: str, params: dict[str, Any]
) -> CursorResult[Any] | None:
    """Run `statement`, an INSERT without `ON CONFLICT`, in a savepoint; None when a row broke a unique
    key, with the savepoint (and so every row of the statement) undone.

    For a bulk insert into a shop's empty tables (its first history import): checking every row
    against the key costs `ON CONFLICT` seconds a million rows, yet a live order can still land between
    the check that the shop has none and the insert, and the caller then runs its upsert."""
    try:
        async with session.begin_nested():
            return await session.execute(text(statement), params)  # type: ignore[return-value]
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        return None


def service_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def declarative_base_for(schema: str) -> type[DeclarativeBase]:
    """A declarative base whose tables all live in the service's own schema."""

    class Base(DeclarativeBase):
        metadata = service_metadata(schema)

    return Base


class Database:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = _engine(
            settings,
            # A steady pool sized for the process's concurrency: overflow connections are opened and
            # closed per burst, which costs far more than the requests they serve.
            pool_size=settings.db_pool_size,
            max_overflow=5,
            pool_recycle=1800,
            # No pre-ping round trip per checkout: a connection lost to a database restart fails its
            # request with 503 (see errors.py) and is discarded by the pool.
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        # Reads outside a transaction block, on the same pool. Under READ COMMITTED every statement
        # takes its own snapshot inside a transaction too, so a read sees the same; it saves the
        # `BEGIN` and `COMMIT` round trips, two of a keyed read's three.
        self.reads = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
            autoflush=False,
        )
        self._own_connection_engines: list[AsyncEngine] = []

    def sessions_on_own_connections(self, **server_settings: str) -> async_sessionmaker[AsyncSession]:
        """Sessions that each open a connection of their own with these PostgreSQL settings and close
        it when done. For a long job whose settings must be in place before the connection does
        anything (`temp_buffers`) and whose memory must not stay behind in the pool."""
        engine = _engine(self.settings, poolclass=NullPool, server_settings=server_settings)
        self._own_connection_engines.append(engine)
        return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commit on success, roll back on any error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        for engine in (self.engine, *self._own_connection_engines):
            await engine.dispose()


def _engine(
    settings: ServiceSettings, server_settings: dict[str, str] | None = None, **options: Any
) -> AsyncEngine:
    named = {"application_name": f"laoke-{settings.service_name}", **(server_settings or {})}
    return create_async_engine(
        settings.database_url,
        connect_args={"server_settings": named},
        # JSONB in and out through orjson: the standard library's decoder was 8 % of a dispatcher
        # busy with a campaign (every queued message carries its variables).
        json_serializer=dumps_text,
        json_deserializer=loads,
        **options,
    )


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.transaction() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


class WriteInReadSession(RuntimeError):
    """An endpoint declared as a read changed ORM objects: with no commit to come, the change would be
    lost without a word, so the request fails instead."""


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.reads() as session:
        yield session
        if session.new or session.dirty or session.deleted:
            raise WriteInReadSession("an endpoint on ReadSessionDep changed ORM objects; use SessionDep")


# For endpoints that only read (statements that write would each commit on their own: none belong here),
# and not for one that streams rows through a server-side cursor, which needs a transaction.
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]
