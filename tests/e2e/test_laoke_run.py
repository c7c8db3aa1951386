"""The README flow against `laoke run` itself: real processes, embedded PostgreSQL and broker.

Start the stack, create a shop with the CLI, post an order through the gateway, read the points;
Ctrl-C stops everything; a second start keeps the data; `laoke stop` stops it from outside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from laoke.devstack.broker import port_open
from laoke.testing.factories import order_json
from laoke.testing.infra import free_port, free_port_block
from laoke.testing.plugin import Isolated

ORDER = order_json("E2E-1", buyer="e2e-buyer", nick="老王", total="256.80")


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env.update(
        LAOKE_DATA_DIR=str(tmp_path / "data"),
        LAOKE_PORT_BASE=str(free_port_block(5)),
        LAOKE_PG_PORT=str(free_port()),
        LAOKE_BROKER_PORT=str(free_port()),
    )
    return env


def start_stack(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "laoke.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        output.append(line)
        if "Press Ctrl-C" in line or time.monotonic() > deadline:
            break
    text = "".join(output)
    assert "Press Ctrl-C" in text, text
    return process, text


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "laoke.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_for_points(gateway: str, api_key: str, customer_id: str, expected: int) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        response = httpx.get(
            f"{gateway}/api/v1/loyalty/members/{customer_id}", headers={"Authorization": f"Bearer {api_key}"}
        )
        if response.status_code == 200 and response.json()["points_available"] == expected:
            return response.json()
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_readme_flow_ctrl_c_and_restart_keep_data(stack_env: dict[str, str]) -> None:
    data_dir = Path(stack_env["LAOKE_DATA_DIR"])
    gateway = f"http://127.0.0.1:{stack_env['LAOKE_PORT_BASE']}"
    process, banner = start_stack(stack_env)
    try:
        secrets = json.loads((data_dir / "secrets.json").read_text())
        assert gateway in banner and secrets["admin_token"] in banner

        created = cli(stack_env, "shop", "create", "--name", "西湖茶庄")
        assert created.returncode == 0, created.stdout + created.stderr
        api_key = json.loads(created.stdout)["api_key"]

        order = httpx.post(
            f"{gateway}/api/v1/orders", json=ORDER, headers={"Authorization": f"Bearer {api_key}"}
        )
        assert order.status_code == 201, order.text
        customer_id = order.json()["order"]["customer_id"]
        wait_for_points(gateway, api_key, customer_id, 256)
        assert cli(stack_env, "status").returncode == 0

        # A second start beside it refuses, and leaves the running stack findable and whole.
        again = cli(stack_env, "run")
        assert again.returncode == 1 and "already running" in again.stderr, again.stdout + again.stderr
        assert (data_dir / "run.json").exists() and cli(stack_env, "status").returncode == 0
        wait_for_points(gateway, api_key, customer_id, 256)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    assert not (data_dir / "run.json").exists()
    for offset in range(5):
        assert not port_open("127.0.0.1", int(stack_env["LAOKE_PORT_BASE"]) + offset)
    assert not port_open("127.0.0.1", int(stack_env["LAOKE_PG_PORT"]))

    # Second start: the same data folder, so the shop, its key and the points are still there.
    process, _ = start_stack(stack_env)
    try:
        member = wait_for_points(gateway, api_key, customer_id, 256)
        assert member["lifetime_earned"] == 256
        profile = httpx.get(
            f"{gateway}/api/v1/customers/{customer_id}", headers={"Authorization": f"Bearer {api_key}"}
        )
        assert profile.json()["orders_count"] == 1
        stopped = cli(stack_env, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_configured_servers_are_used_and_nothing_embedded_starts(
    stack_env: dict[str, str], isolated: Isolated
) -> None:
    env = {
        **stack_env,
        "DATABASE_URL": isolated.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": isolated.broker.bootstrap_servers,
    }
    data_dir = Path(env["LAOKE_DATA_DIR"])
    gateway = f"http://127.0.0.1:{env['LAOKE_PORT_BASE']}"
    process, banner = start_stack(env)
    try:
        assert "(DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS)" in banner
        assert not (data_dir / "pgdata").exists()
        assert not port_open("127.0.0.1", int(env["LAOKE_PG_PORT"]))
        assert not port_open("127.0.0.1", int(env["LAOKE_BROKER_PORT"]))
        created = cli(env, "shop", "create", "--name", "外部服务器店")
        assert created.returncode == 0, created.stdout + created.stderr
        api_key = json.loads(created.stdout)["api_key"]
        order = httpx.post(
            f"{gateway}/api/v1/orders",
            json={**ORDER, "order_id": "EXT-1"},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert order.status_code == 201, order.text
        wait_for_points(gateway, api_key, order.json()["order"]["customer_id"], 256)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
