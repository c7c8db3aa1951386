"""`insert_plainly`: a bulk insert that breaks a unique key is undone whole and says so; the
transaction goes on, so the caller can upsert instead. Any other error is raised."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from laoke.kit.db import insert_plainly

INSERT = "INSERT INTO plain_insert_probe (id, note) SELECT n, :note FROM generate_series(1, 5) n"


async def test_a_broken_key_undoes_the_whole_insert_and_the_transaction_goes_on(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine) as session:
            await session.execute(
                text("CREATE TEMP TABLE plain_insert_probe (id int PRIMARY KEY, note text NOT NULL)")
            )
            inserted = await insert_plainly(session, INSERT, {"note": "first"})
            assert inserted is not None and inserted.rowcount == 5

            # Every id is taken now: the second insert is undone, not half applied.
            assert await insert_plainly(session, INSERT, {"note": "second"}) is None
            notes = (await session.execute(text("SELECT DISTINCT note FROM plain_insert_probe"))).all()
            assert [n for (n,) in notes] == ["first"]

            # The transaction is still usable: the caller's upsert runs in it.
            await session.execute(
                text(INSERT + " ON CONFLICT (id) DO UPDATE SET note = 'upserted'"), {"note": "x"}
            )
            assert (
                await session.scalar(text("SELECT count(*) FROM plain_insert_probe WHERE note = 'upserted'"))
                == 5
            )

            # A broken NOT NULL is not a key the caller can upsert around: it is raised.
            await session.execute(text("TRUNCATE plain_insert_probe"))
            with pytest.raises(IntegrityError):
                await insert_plainly(session, INSERT, {"note": None})
            await session.rollback()
    finally:
        await engine.dispose()
