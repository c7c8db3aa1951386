"""What every benchmark shares: a running stack, a shop, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from laoke.devstack.supervisor import Stack

RESULTS = Path(__file__).parent / "results"


@dataclass
class BenchContext:
    stack: Stack
    gateway_url: str
    admin_token: str
    internal_secret: str
    database_url: str

    def service_url(self, name: str) -> str:
        from laoke.stack import component

        return self.stack.config.url(component(name))

    async def new_shop(self, client: httpx.AsyncClient, name: str) -> dict[str, Any]:
        response = await client.post(
            f"{self.gateway_url}/api/v1/admin/shops",
            json={"name": name},
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        response.raise_for_status()
        return response.json()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize_ms(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p90_ms": round(percentile(values, 90), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(max(values), 3) if values else float("nan"),
    }


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "measured_at": datetime.now(UTC).isoformat(), "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path


# A stack is quiet when its processes together use less than this share of one core (idle polling and
# the relays' wake-ups stay well below it).
QUIET_CORES = 0.15


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_until_quiet(stack: Stack, quiet_seconds: float = 3.0, give_up_after: float = 300.0) -> float:
    """Wait until the previous benchmark's leftover work is done (a consumer still absorbing its
    events, say): a benchmark measured while another one's backlog drains measures both. Returns how
    long it waited."""
    pids = [child.process.pid for child in stack.children.values()]
    if stack.postgres is not None:
        pids += _postgres_pids(stack)
    started = time.monotonic()
    quiet_since: float | None = None
    last = sum(_cpu_seconds(pid) for pid in pids)
    while time.monotonic() - started < give_up_after:
        time.sleep(1.0)
        now = sum(_cpu_seconds(pid) for pid in pids)
        busy, last = now - last, now
        if busy < QUIET_CORES:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_seconds:
                break
        else:
            quiet_since = None
    return time.monotonic() - started


def _postgres_pids(stack: Stack) -> list[int]:
    """The embedded server's processes (its backends do the consumers' database work)."""
    pid_file = stack.config.folder / "pgdata" / "postmaster.pid"
    try:
        postmaster = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return [postmaster, *children]
