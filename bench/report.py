"""`bench/results/REPORT.md`: every measured figure beside its target from the issues, with the machine,
the date each was measured and the commit the report was written at. `make bench` writes it after the
runs; `python -m bench.report` rewrites it from the recorded results."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from bench.common import RESULTS, machine

Row = tuple[str, str, str, bool | None]  # figure, measured, target, met


def _rows_gateway(r: dict[str, Any]) -> Iterator[Row]:
    for rate, x in r["rates"].items():
        o = x["overhead"]
        yield (
            f"gateway overhead per request at {rate} req/s (p50 / p99)",
            f"{o['p50_ms']} / {o['p99_ms']} ms",
            "≤ 1 / ≤ 5 ms at 1,000 req/s",
            x["met"],
        )


def _rows_orders(r: dict[str, Any]) -> Iterator[Row]:
    for rate, x in r["rates"].items():
        a = x["accepted_to_credited"]
        yield (
            f"order accepted → points credited at {rate}/s (achieved; p50 / p99)",
            f"{x['achieved_rate_per_second']}/s; {a['p50_ms']} / {a['p99_ms']} ms",
            "500 orders/s; p50 ≤ 15 ms, p99 ≤ 100 ms",
            x["met"],
        )
    lone = r.get("lone_orders")
    if lone:
        a = lone["accepted_to_credited"]
        yield (
            f"order accepted → points credited, one order at a time ({lone['rate_per_second']:g}/s; "
            "p50 / p99)",
            f"{a['p50_ms']} / {a['p99_ms']} ms",
            "(the pipeline's own latency; no target)",
            None,
        )


def _rows_import(r: dict[str, Any]) -> Iterator[Row]:
    for rows, x in r["sizes"].items():
        i = x["import"]
        yield (
            f"history import, {rows} rows",
            f"{i['import_seconds']} s ({i['rows_per_second']} rows/s)",
            "≥ 100,000 rows/s, 1M rows ≤ 20 s",
            r["met"],
        )
        scored = i.get("profiles_scored_seconds_after_import")
        if scored is not None:
            yield (
                f"imported buyers profiled and scored, {rows} rows",
                f"{scored} s after the import",
                "≤ 30 s",
                scored <= 30,
            )


def _rows_webhooks(r: dict[str, Any]) -> Iterator[Row]:
    for rate, x in r["rates"].items():
        met = x.get("met", {})
        yield (
            f"signed webhooks at {rate}/s (achieved; p99)",
            f"{x['achieved_rate_per_second']}/s; {x['latency']['p99_ms']} ms",
            "1,500/s sustained; p99 ≤ 30 ms at 1,000/s",
            bool(met.get("sustained")),
        )


def _rows_rfm(r: dict[str, Any]) -> Iterator[Row]:
    yield (
        f"RFM full rescore, {r['customers']:,} customers",
        f"{r['first_rescore']['seconds']} s",
        "≤ 15 s",
        r["met"]["full_recompute_15s"],
    )
    yield (
        "RFM scheduled refresh, window counts current",
        f"{r['unchanged_rescore']['seconds']} s",
        "≤ 3 s",
        r["unchanged_rescore"]["seconds"] <= 3,
    )
    yield ("segment preview", f"{r['preview']['seconds']} s", "≤ 1 s", r["met"]["preview_1s"])


def _rows_segmentation(r: dict[str, Any]) -> Iterator[Row]:
    yield ("order events absorbed by segmentation", f"{r['events_per_second']}/s", "≥ 3,000/s", r["met"])


def _rows_expiry(r: dict[str, Any]) -> Iterator[Row]:
    yield (
        f"points expiry, {r['members']:,} members",
        f"{r['expire_seconds']} s ({r['invariant_violations']} invariant violations)",
        "≤ 30 s, none",
        r["met"],
    )


def _rows_redemptions(r: dict[str, Any]) -> Iterator[Row]:
    yield (
        "redemptions through the gateway",
        f"{r['redemptions_per_second']}/s",
        "≥ 1,000/s",
        r["redemptions_per_second"] >= 1000,
    )


def _rows_campaigns(r: dict[str, Any]) -> Iterator[Row]:
    for channel, target in (("inapp", 20_000), ("sms", 5_000)):
        x = r[channel]
        yield (
            f"campaign, {channel}, {x['buyers']:,} buyers",
            f"{x['messages_per_second']:,} messages/s",
            f"≥ {target:,}/s",
            x["messages_per_second"] >= target,
        )


def _rows_automation(r: dict[str, Any]) -> Iterator[Row]:
    x = r["latency"]
    yield (
        f"automation reaction at {r['rate_per_second']} events/s (p50 / p99)",
        f"{x['p50_ms']} / {x['p99_ms']} ms",
        "p99 ≤ 200 ms",
        x["p99_ms"] <= 200,
    )


def _rows_console(r: dict[str, Any]) -> Iterator[Row]:
    for page, x in r["pages"].items():
        yield (
            f"console page “{page}”, {r['customers']:,} customers (p50)",
            f"{x['p50_ms']} ms",
            "< 300 ms",
            x["p50_ms"] < 300,
        )


def _rows_mixed(r: dict[str, Any]) -> Iterator[Row]:
    for route, x in r["routes"].items():
        lat = x["latency"]
        ok = x["errors"] == 0 and x["ok"] == sum(x["statuses"].values())
        yield (
            f"mixed load, {route} at {x['rate_per_second']}/s (achieved; p50 / p99)",
            f"{x['achieved_per_second']}/s; {lat['p50_ms']} / {lat['p99_ms']} ms",
            "rate held, every request answered 2xx",
            ok and x["achieved_per_second"] >= 0.95 * x["rate_per_second"],
        )
    c = r["campaign"]
    yield (
        f"mixed load, in-app campaign to {c['targeted']:,} buyers launched mid-run",
        f"{c['status']} in {c['launch_to_completed_seconds']} s",
        "completes",
        c["status"] == "completed",
    )
    for process, m in r["memory"].items():
        yield (
            f"mixed load, {process} resident memory over {r['seconds']:.0f} s",
            f"{m['before_mib']} → {m['after_mib']} MiB ({m['slope_mib_per_minute']:+} MiB/min)",
            "no growth trend",
            not m["growing"],
        )


ROWS: dict[str, Callable[[dict[str, Any]], Iterator[Row]]] = {
    "gateway_overhead": _rows_gateway,
    "order_to_points": _rows_orders,
    "import_history": _rows_import,
    "webhooks": _rows_webhooks,
    "rfm": _rows_rfm,
    "segmentation_events": _rows_segmentation,
    "loyalty_expiry": _rows_expiry,
    "redemptions": _rows_redemptions,
    "campaigns": _rows_campaigns,
    "automation_latency": _rows_automation,
    "console_pages": _rows_console,
    "mixed_load": _rows_mixed,
}


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(results: dict[str, dict[str, Any]]) -> str:
    m = machine()
    lines = [
        "# Benchmark report",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit `{_commit()}`. Machine: {m['cpus']} CPUs, "
        f"{m['memory_gib']} GiB, Python {m['python']}, {m['platform']}; the load, the gateway, the services, "
        "PostgreSQL and the broker share it. Details per benchmark: SUMMARY.md and the JSON files.",
        "",
        "| benchmark | figure | measured | target | met | measured at |",
        "|---|---|---|---|---|---|",
    ]
    met = total = 0
    for name, rows in ROWS.items():
        result = results.get(name)
        if result is None:
            lines.append(f"| {name} | — | not run | | | |")
            continue
        when = str(result.get("measured_at", ""))[:16].replace("T", " ")
        for figure, measured, target, ok in rows(result):
            total += ok is not None
            met += bool(ok)
            verdict = "yes" if ok else ("—" if ok is None else "**no**")
            lines.append(f"| {name} | {figure} | {measured} | {target} | {verdict} | {when} |")
    lines += ["", f"{met} of {total} figures meet their targets (— : recorded without a target).", ""]
    return "\n".join(lines)


def main() -> None:
    results = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}
    (RESULTS / "REPORT.md").write_text(report(results))


if __name__ == "__main__":
    main()
