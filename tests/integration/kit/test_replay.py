"""`laoke replay`: re-publishing a time range of the outbox changes nothing downstream (consumers dedupe)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from laoke.testing.factories import order_json
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from tests.integration.loyalty.test_earning import handled_count

ORDER = order_json("REPLAY-1", buyer="replay-buyer", total="77.70")


async def test_replay_republishes_and_consumers_ignore_duplicates(shop: ShopClient, stack: ServerSet) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    created = (await shop.client.post("/api/v1/orders", json=ORDER, headers=shop.headers())).json()["order"]
    path = f"/api/v1/loyalty/members/{created['customer_id']}"

    async def credited() -> None:
        member = await shop.client.get(path, headers=shop.headers())
        assert member.status_code == 200 and member.json()["points_available"] == 77

    await eventually(credited)
    duplicates_before = await handled_count(stack["loyalty"].url, "duplicate")

    until = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    command = [sys.executable, "-m", "laoke.cli", "replay", "--since", since.isoformat(), "--until", until]
    env = {**os.environ, "DATABASE_URL": stack["ingest"].settings.database_url}
    replayed = await asyncio.to_thread(
        subprocess.run,
        [*command, "--service", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "ingest: " in replayed.stdout and "events queued" in replayed.stdout

    async def redelivered() -> None:
        assert await handled_count(stack["loyalty"].url, "duplicate") > duplicates_before

    await eventually(redelivered, within=20)
    member = (await shop.client.get(path, headers=shop.headers())).json()
    assert member["points_available"] == 77 and member["lifetime_earned"] == 77
