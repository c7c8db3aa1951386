"""History import: a generated Taobao export (GBK CSV) uploaded through the gateway, end to end.

Measured in one run: a plain PostgreSQL `COPY` of the same file into a table of text columns (the
ceiling: no parsing, no cleaning, no identity, no indexes), then the import of 100k and 1M rows with
the ingest process's peak memory sampled, so "flat memory" is a comparison, not a claim.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import BenchContext, write_result
from laoke.kit.settings import normalise_database_url
from laoke.testing.taobao_export import HEADER_CLASSIC, write

CACHE = Path(".laoke/bench/cache")
SIZES = tuple(int(n) for n in os.environ.get("LAOKE_BENCH_IMPORT_ROWS", "100000,1000000").split(","))


def export_file(rows: int) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"taobao_{rows}_gbk.csv"
    if not path.exists():
        print(f"  generating {path} …", flush=True)
        write(path.with_suffix(".tmp"), rows, encoding="gbk").rename(path)
    return path


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of a process."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


async def plain_copy(database_url: str, path: Path) -> dict[str, Any]:
    dsn = normalise_database_url(database_url).replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        columns = ", ".join(f"c{i} text" for i in range(len(HEADER_CLASSIC)))
        await conn.execute("DROP TABLE IF EXISTS public.bench_copy_reference")
        await conn.execute(f"CREATE TABLE public.bench_copy_reference ({columns})")
        started = time.perf_counter()
        await conn.copy_to_table(
            "bench_copy_reference", schema_name="public", source=str(path), format="csv", header=True,
            encoding="GBK",
        )  # fmt: skip
        seconds = time.perf_counter() - started
        rows = await conn.fetchval("SELECT count(*) FROM public.bench_copy_reference")
        await conn.execute("DROP TABLE public.bench_copy_reference")
    finally:
        await conn.close()
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds)}


async def import_once(ctx: BenchContext, client: httpx.AsyncClient, path: Path) -> dict[str, Any]:
    shop = await ctx.new_shop(client, f"import bench {path.stem}")
    headers = {"Authorization": f"Bearer {shop['api_key']}"}
    pid = ctx.stack.children["ingest"].process.pid
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    rss_before, _ = rss_kib(pid)
    peak = rss_before
    started = time.perf_counter()
    with path.open("rb") as f:
        response = await client.post(
            f"{ctx.gateway_url}/api/v1/imports", files={"file": (path.name, f)}, headers=headers, timeout=600
        )
    response.raise_for_status()
    uploaded = time.perf_counter() - started
    import_id = response.json()["import_id"]
    phases: dict[str, float] = {}
    while True:
        status = (await client.get(f"{ctx.gateway_url}/api/v1/imports/{import_id}", headers=headers)).json()
        phases.setdefault(status["status"], time.perf_counter() - started)
        peak = max(peak, rss_kib(pid)[0])
        if status["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.1)
    total = time.perf_counter() - started
    worked = total - uploaded
    # Downstream: segmentation pulls the import's orders and scores every buyer (RFM + lifecycle).
    scored_after = None
    if status["status"] == "completed":
        # Counted live by a segment preview: the RFM summary of a shop this size answers from its last
        # count (refreshed every 15 s), which would add up to that to the figure.
        labels = ["new", "active", "sleeping", "churned", "prospect"]  # every label: scored
        scored = {"rule": {"field": "lifecycle", "op": "in", "value": labels}}
        while time.perf_counter() - started < total + 600:
            preview = await client.post(
                f"{ctx.gateway_url}/api/v1/segments/preview", json=scored, headers=headers
            )
            if preview.json()["size"] >= status["customers_created"]:
                scored_after = round(time.perf_counter() - started - total, 2)
                break
            await asyncio.sleep(0.5)
    return {
        "status": status["status"],
        "error": status["error"],
        "file_mib": round(size / 2**20, 1),
        "rows_total": status["rows_total"],
        "rows_imported": status["rows_imported"],
        "customers_created": status["customers_created"],
        "upload_seconds": round(uploaded, 2),
        "parse_and_copy_seconds": round(phases.get("storing", total) - uploaded, 2),
        "land_seconds": round(total - phases.get("storing", total), 2),
        "import_seconds": round(worked, 2),
        "total_seconds_including_upload": round(total, 2),
        "rows_per_second": round(status["rows_imported"] / worked) if worked else None,
        "ingest_rss_before_mib": round(rss_before / 1024, 1),
        "ingest_rss_peak_mib": round(peak / 1024, 1),
        "profiles_scored_seconds_after_import": scored_after,
    }


async def run(ctx: BenchContext) -> dict[str, object]:
    result: dict[str, Any] = {"sizes": {}}
    async with httpx.AsyncClient(timeout=60) as client:
        for rows in SIZES:
            path = export_file(rows)
            print(f"  plain COPY of {rows} rows …", flush=True)
            reference = await plain_copy(ctx.database_url, path)
            print(f"  import of {rows} rows …", flush=True)
            measured = await import_once(ctx, client, path)
            result["sizes"][str(rows)] = {"plain_copy": reference, "import": measured}
    big = result["sizes"][str(SIZES[-1])]["import"]
    result["met"] = bool(
        big["status"] == "completed" and big["rows_per_second"] >= 100_000 and big["import_seconds"] <= 20
    )
    write_result("import_history", result)
    return result
