"""A consumer that crashes after its DB commit but before its offset commit credits points once.

The loyalty service runs as a real process; a failpoint makes it `os._exit` at exactly that point,
as a SIGKILL would. After a restart the event is delivered again and must change nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.contracts.envelope import event_key
from laoke.contracts.topics import Topic
from laoke.testing.infra import eventually, free_port
from laoke.testing.plugin import Isolated
from laoke.testing.servers import TEST_INTERNAL_SECRET
from tests.integration.loyalty.test_earning import completed_order_event, handled_count


def start_loyalty(isolated: Isolated, port: int, failpoints: str = "") -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": isolated.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": isolated.broker.bootstrap_servers,
        "LAOKE_INTERNAL_SECRET": TEST_INTERNAL_SECRET,
        "LAOKE_FAILPOINTS": failpoints,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "laoke.cli", "serve", "loyalty", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def ledger(database_url: str) -> tuple[int, int, int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            entries = await conn.scalar(text("SELECT count(*) FROM loyalty.points_ledger"))
            balance = await conn.scalar(text("SELECT coalesce(sum(points_balance), 0) FROM loyalty.members"))
            processed = await conn.scalar(text("SELECT count(*) FROM loyalty.processed_events"))
            return int(entries or 0), int(balance or 0), int(processed or 0)
    finally:
        await engine.dispose()


async def test_crash_between_db_commit_and_offset_commit_credits_once(isolated: Isolated) -> None:
    port = free_port()
    crashing = start_loyalty(isolated, port, "consumer.after_db_commit=exit")
    restarted = None
    try:
        producer = AIOKafkaProducer(bootstrap_servers=isolated.broker.bootstrap_servers)
        await producer.start()
        try:
            event = completed_order_event("shp_crash", "cus_crash", "ord_crash", 19_900)
            await producer.send_and_wait(
                Topic.ORDERS,
                event.model_dump_json().encode(),
                key=event_key("shp_crash", "cus_crash").encode(),
            )
        finally:
            await producer.stop()

        exit_code = await asyncio.to_thread(crashing.wait, 60)
        assert exit_code == 137  # died at the failpoint, offset not committed
        assert await ledger(isolated.database_url) == (1, 199, 1)

        restarted = start_loyalty(isolated, port)

        async def redelivered_and_skipped() -> None:
            try:
                assert await handled_count(f"http://127.0.0.1:{port}", "duplicate") == 1
            except httpx.HTTPError as exc:
                raise AssertionError("loyalty not up yet") from exc

        await eventually(redelivered_and_skipped, within=60, interval=0.25)
        assert await ledger(isolated.database_url) == (1, 199, 1)
    finally:
        for process in (crashing, restarted):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)
