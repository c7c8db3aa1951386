"""`make bench`: start a stack of its own (embedded servers, its own data folder and ports), run every
benchmark module in bench/, write bench/results/<name>.json and bench/results/SUMMARY.md."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import asyncpg
import uvloop

from bench.common import RESULTS, BenchContext, machine, wait_until_quiet
from bench.report import report
from laoke.devstack.supervisor import Stack, StackConfig
from laoke.kit.settings import normalise_database_url
from laoke.stack import GATEWAY
from laoke.testing.infra import FAST_PG, free_port

BENCHMARKS = (
    "gateway_overhead",
    "order_to_points",
    "import_history",
    "webhooks",
    "rfm",
    "segmentation_events",
    "loyalty_expiry",
    "redemptions",
    "campaigns",
    "automation_latency",
    "console_pages",
    "mixed_load",
)


def summary(results: dict[str, dict[str, object]]) -> str:
    m = machine()
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {m['cpus']} CPUs, {m['memory_gib']} GiB, Python {m['python']}, {m['platform']}.",
        "Load generator, gateway, services, PostgreSQL and the broker all share this machine.",
        "",
    ]
    gw = results.get("gateway_overhead")
    if gw:
        lines += [
            f"## Gateway overhead ({gw['request']}, open-loop, alternating rounds)",
            "",
            "| rate req/s | path | p50 ms | p90 ms | p99 ms | achieved req/s | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        verdicts = []
        for rate, r in gw["rates"].items():  # type: ignore[attr-defined]
            for label, key in (("direct to ingest", "direct"), ("through gateway", "gateway")):
                x = r[key]
                lines.append(
                    f"| {rate} | {label} | {x['p50_ms']} | {x['p90_ms']} | {x['p99_ms']} "
                    f"| {x['throughput_rps']} | {x['errors']} |"
                )
            o = r["overhead"]
            verdicts.append(
                f"- at {rate} req/s: overhead p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms "
                f"(target ≤ 1 / ≤ 5): {'met' if r['met'] else 'NOT met'}"
            )
        lines += ["", *verdicts, ""]
    op = results.get("order_to_points")
    if op:
        lines += [
            "## Order accepted → points credited (completed orders POSTed via the gateway, 10 s per rate)",
            "",
            "| rate orders/s | achieved | accepted | credited | credited p50 ms | p90 ms | p99 ms "
            "| POST p50 ms | POST p99 ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        verdicts = []
        for rate, r in op["rates"].items():  # type: ignore[attr-defined]
            a, h = r["accepted_to_credited"], r["post_order_http"]
            lines.append(
                f"| {rate} | {r['achieved_rate_per_second']} | {r['orders_accepted']} "
                f"| {r['orders_credited']} "
                f"| {a['p50_ms']} | {a['p90_ms']} | {a['p99_ms']} | {h['p50_ms']} | {h['p99_ms']} |"
            )
            verdicts.append(
                f"- at {rate} orders/s: target p50 ≤ 15 ms, p99 ≤ 100 ms: {'met' if r['met'] else 'NOT met'}"
            )
        lone = op.get("lone_orders")
        if lone:
            a = lone["accepted_to_credited"]  # type: ignore[index]
            verdicts.append(
                f"- orders one at a time ({lone['orders_accepted']} at {lone['rate_per_second']:g}/s, "  # type: ignore[index]
                f"none waiting for another): credited p50 {a['p50_ms']} ms, p90 {a['p90_ms']} ms, "
                f"p99 {a['p99_ms']} ms — the pipeline's own latency, the floor under the figures above"
            )
        lines += ["", *verdicts, ""]
    ih = results.get("import_history")
    if ih:
        lines += [
            "## History import (generated Taobao export, GBK CSV, uploaded through the gateway)",
            "",
            "| rows | file MiB | plain COPY s | COPY rows/s | import s | rows/s | parse+COPY s | land s "
            "| upload s | ingest RSS peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for rows, r in ih["sizes"].items():  # type: ignore[attr-defined]
            c, i = r["plain_copy"], r["import"]
            lines.append(
                f"| {rows} | {i['file_mib']} | {c['seconds']} | {c['rows_per_second']} "
                f"| {i['import_seconds']} "
                f"| {i['rows_per_second']} | {i['parse_and_copy_seconds']} | {i['land_seconds']} "
                f"| {i['upload_seconds']} | {i['ingest_rss_peak_mib']} |"
            )
        lines += [
            "",
            f"- target ≥ 100,000 rows/s and ≤ 20 s for 1M rows: {'met' if ih['met'] else 'NOT met'}",
            "- every imported buyer profiled and RFM-scored by segmentation after the import finished: "
            + ", ".join(
                f"{rows} rows {r['import'].get('profiles_scored_seconds_after_import')} s"
                for rows, r in ih["sizes"].items()
            )
            + " (target ≤ 30 s)",
            "",
        ]
    wh = results.get("webhooks")
    if wh:
        lines += [
            "## Webhooks (signed Taobao trades through the gateway, open loop, 10 s per rate)",
            "",
            "| rate/s | achieved/s | accepted | failed | p50 ms | p90 ms | p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for rate, r in wh["rates"].items():  # type: ignore[attr-defined]
            x = r["latency"]
            lines.append(
                f"| {rate} | {r['achieved_rate_per_second']} | {r['accepted']} | {r['failed']} "
                f"| {x['p50_ms']} | {x['p90_ms']} | {x['p99_ms']} |"
            )
        lines += ["", "- targets: ≥ 1,500 orders/s sustained; p99 ≤ 30 ms at 1,000 orders/s", ""]
    rf = results.get("rfm")
    if rf:
        first, again, preview = rf["first_rescore"], rf["unchanged_rescore"], rf["preview"]
        lines += [
            f"## RFM ({rf['customers']:,} customers, {rf['orders']:,} orders, one shop, generated in SQL)",
            "",
            f"- full rescore, every profile changing: {first['seconds']} s "
            f"({first['changed']:,} changed, {first['lifecycle_events']:,} lifecycle events) — target ≤ 15 s",
            f"- scheduled refresh with the window counts current: {again['seconds']} s — target ≤ 3 s"
            + (
                f"; counting every order again instead: {rf['full_unchanged_rescore']['seconds']} s; "
                f"the next day's refresh: {rf['next_day_refresh']['seconds']} s "
                f"({rf['next_day_refresh']['changed']:,} changed)"
                if "next_day_refresh" in rf
                else ""
            ),
            f"- segment preview (count + first page) for a three-condition rule: {preview['seconds']} s "
            f"({preview['size']:,} members) — target ≤ 1 s",
            "",
        ]
    se = results.get("segmentation_events")
    if se:
        lines += [
            "## Incremental segmentation (order events onto Kafka; profile, RFM and segments per run)",
            "",
            f"- {se['events']:,} events for {se['buyers']:,} buyers absorbed in {se['seconds']} s: "
            f"{se['events_per_second']} events/s (target ≥ 3,000)",
            "",
        ]
    le = results.get("loyalty_expiry")
    if le:
        lines += [
            f"## Points expiry ({le['members']:,} members with lots, set-based, the worker's own job)",
            "",
            f"- {le['members_expired']:,} members, {le['points_expired']:,} points expired in "
            f"{le['expire_seconds']} s (target ≤ 30 s); invariant violations afterwards: "
            f"{le['invariant_violations']}",
            "",
        ]
    rd = results.get("redemptions")
    if rd:
        x = rd["latency"]
        lines += [
            f"## Redemptions ({rd['redemptions']:,} over {rd['members']:,} members, "
            f"{rd['concurrency']} clients, through the gateway)",
            "",
            f"- {rd['redemptions_per_second']} redemptions/s (target ≥ 1,000); p50 {x['p50_ms']} ms, "
            f"p99 {x['p99_ms']} ms; failures {rd['failures'] or 'none'}; members with a wrong balance "
            f"{rd['members_with_wrong_balance']}, with ledger drift {rd['members_with_ledger_drift']}",
            "",
        ]
    cp = results.get("campaigns")
    if cp:
        lines += ["## Campaigns (launch through the gateway until every message is settled)", ""]
        for channel, target in (("inapp", "20,000"), ("sms", "5,000")):
            c = cp[channel]
            lines.append(
                f"- {channel}: {c['buyers']:,} buyers, {c['targeted']:,} targeted "
                f"({c['holdout']:,} held out), "
                f"{c['sent']:,} sent in {c['launch_to_completed_seconds']} s — {c['messages_per_second']:,} "
                f"messages/s (target ≥ {target}); snapshot {c['launch_to_snapshot_seconds']} s after launch"
            )
        lines.append("")
    al = results.get("automation_latency")
    if al:
        x = al["latency"]
        lines += [
            "## Automation reaction (`order.shipped` on Kafka → in-app shipment notice sent)",
            "",
            f"- {al['events']:,} events at {al['rate_per_second']}/s "
            f"(achieved {al['achieved_produce_rate']}/s): "
            f"{al['messages_sent']:,} sent; p50 {x['p50_ms']} ms, p99 {x['p99_ms']} ms (target p99 ≤ 200 ms)",
            "",
        ]
    cs = results.get("console_pages")
    if cs:
        lines += [
            f"## Console pages ({cs['customers']:,} customers, {cs['orders']:,} orders; "
            f"{cs['loads']} loads per page after a warm-up)",
            "",
            "| page | p50 ms | p90 ms | max ms |",
            "|---|---|---|---|",
        ]
        for page, x in cs["pages"].items():  # type: ignore[attr-defined]
            lines.append(f"| {page} | {x['p50_ms']} | {x['p90_ms']} | {x['max_ms']} |")
        slow = cs["over_300ms_p50"] or "none"
        lines += ["", f"- target: every page under 300 ms; over it at p50: {slow}", ""]
    mx = results.get("mixed_load")
    if mx:
        lines += [
            f"## Mixed load ({mx['seconds']:.0f} s open loop after a {mx['warmup_seconds']:.0f} s warm-up, "
            "every route at once, a campaign launched a third of the way in)",
            "",
            "| route | rate/s | achieved/s | statuses | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for route, x in mx["routes"].items():  # type: ignore[attr-defined]
            lat = x["latency"]
            statuses = ", ".join(f"{k}: {v}" for k, v in x["statuses"].items())
            lines.append(
                f"| {route} | {x['rate_per_second']} | {x['achieved_per_second']} | {statuses} "
                f"| {lat['p50_ms']} | {lat['p90_ms']} | {lat['p99_ms']} | {lat['max_ms']} |"
            )
        c = mx["campaign"]
        lines += [
            "",
            f"- campaign to {c['targeted']:,} buyers: {c['status']}, {c['launch_to_completed_seconds']} s "
            "from launch",
            "",
            "| process | RSS before MiB | after MiB | peak MiB | trend MiB/min | growing |",
            "|---|---|---|---|---|---|",
        ]
        for process, m in mx["memory"].items():  # type: ignore[attr-defined]
            lines.append(
                f"| {process} | {m['before_mib']} | {m['after_mib']} | {m['peak_mib']} "
                f"| {m['slope_mib_per_minute']} | {'yes' if m['growing'] else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines)


async def vacuum(database_url: str) -> float:
    """`VACUUM (ANALYZE)` of the whole database, for the seconds it took. A benchmark leaves up to
    millions of fresh rows behind (the RFM one ten million orders, the campaigns a million messages);
    autovacuum starts on them a minute or so later, maybe in the middle of the next benchmark, whose
    two cores it then shares, and the wait for a quiet stack cannot see it coming."""
    started = time.perf_counter()
    conn = await asyncpg.connect(normalise_database_url(database_url).replace("+asyncpg", ""))
    try:
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()
    return time.perf_counter() - started


def main() -> int:
    selected = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; there are: {' '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    folder = Path(os.environ.get("LAOKE_BENCH_DIR", ".laoke/bench")).resolve()
    # Every run starts from an empty database: tables grown by earlier runs would skew the figures.
    shutil.rmtree(folder / "pgdata", ignore_errors=True)
    config = StackConfig(
        folder=folder,
        port_base=int(os.environ.get("LAOKE_BENCH_PORT_BASE", "18000")),
        pg_port=free_port(),
        broker_port=free_port(),
        database="laoke_bench",
        pg_settings=FAST_PG,
        extra_env={"GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "GATEWAY_RATE_LIMIT_BURST": "1000000"},
    )
    stack = Stack(config)
    results: dict[str, dict[str, object]] = {}
    try:
        print("Starting a stack for benchmarks …", flush=True)
        stack.start()
        ctx = BenchContext(
            stack=stack,
            gateway_url=config.url(GATEWAY),
            admin_token=stack.env["LAOKE_ADMIN_TOKEN"],
            internal_secret=stack.env["LAOKE_INTERNAL_SECRET"],
            database_url=stack.env["DATABASE_URL"],
        )
        for number, name in enumerate(selected):
            if number:
                # A fresh broker (and services) for each benchmark, on the same database: the embedded
                # broker keeps every record in memory and grows dearer with what it holds (the same
                # 10,000 events took it 5.3, 12.2, then 15.0 s of CPU run after run), so a benchmark
                # would pay for the ones before it. Production runs Kafka with retention.
                print("Restarting the stack for a fresh broker …", flush=True)
                stack.stop()
                stack.start()
            waited = wait_until_quiet(stack)
            print(f"Running {name} … (after {waited:.0f} s for the stack to go quiet)", flush=True)
            module = importlib.import_module(f"bench.{name}")
            print(json.dumps(uvloop.run(module.run(ctx)), indent=2, ensure_ascii=False), flush=True)
            # The recorded file, which also holds when and on what it was measured.
            results[name] = json.loads((RESULTS / f"{name}.json").read_text())
            if number < len(selected) - 1:
                seconds = asyncio.run(vacuum(ctx.database_url))
                print(f"Vacuumed what {name} left behind in {seconds:.0f} s", flush=True)
    finally:
        stack.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Benchmarks not run this time keep their last recorded results in the summary.
    for name in BENCHMARKS:
        recorded = RESULTS / f"{name}.json"
        if name not in results and recorded.exists():
            results[name] = json.loads(recorded.read_text())
    (RESULTS / "SUMMARY.md").write_text(summary(results))
    (RESULTS / "REPORT.md").write_text(report(results))
    print(f"\nResults in {RESULTS}/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
