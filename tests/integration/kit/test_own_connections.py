"""Sessions on connections of their own (a history import's): their settings hold from the start, the
pool never sees them, and the connection is gone when the session is."""

from __future__ import annotations

from sqlalchemy import text

from laoke.kit.db import Database
from laoke.kit.settings import ServiceSettings
from laoke.testing.infra import eventually
from laoke.testing.plugin import Isolated


async def test_a_session_on_its_own_connection_has_its_settings_and_closes_it(isolated: Isolated) -> None:
    settings = ServiceSettings(
        service_name="own-connection-test",
        database_url=isolated.database_url,
        kafka_bootstrap_servers=isolated.broker.bootstrap_servers,
    )
    db = Database(settings)
    sessions = db.sessions_on_own_connections(temp_buffers="64MB")
    try:
        async with sessions() as session, session.begin():
            # Given at connect: PostgreSQL refuses to change temp_buffers once temp tables were used.
            await session.execute(text("CREATE TEMP TABLE scratch (n int) ON COMMIT DROP"))
            assert await session.scalar(text("SHOW temp_buffers")) == "64MB"
            own_pid = await session.scalar(text("SELECT pg_backend_pid()"))

        async with db.transaction() as session:
            assert await session.scalar(text("SHOW temp_buffers")) != "64MB"

        async def closed() -> None:
            async with db.transaction() as session:
                alive = await session.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": own_pid}
                )
            assert alive == 0

        await eventually(closed)
    finally:
        await db.dispose()
