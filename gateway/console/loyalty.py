"""Loyalty: the programme (tiers, earning, sign-in, expiry), rewards, coupon templates, lotteries and
engagement activities with their results."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.console.base import Api, field_errors, redirect, render
from gateway.console.session import ApiDep

router = APIRouter(prefix="/console")

TIER_ROWS = 6


async def _page(
    request: Request, api: Api, program: dict[str, Any], errors: dict[str, str], saved: bool
) -> Response:
    rewards, templates, lotteries = await asyncio.gather(
        api.get("/api/v1/loyalty/rewards"),
        api.get("/api/v1/coupons/templates"),
        api.get("/api/v1/loyalty/lotteries"),
    )
    tiers = list(program.get("tiers", []))
    return render(
        request,
        "loyalty.html",
        status_code=422 if errors else 200,
        program=program,
        tiers=tiers + [{}] * max(TIER_ROWS - len(tiers), 1),
        rewards=rewards["items"],
        templates=templates["items"],
        lotteries=lotteries["items"],
        errors=errors,
        saved=saved,
    )


@router.get("/loyalty", response_class=HTMLResponse)
async def loyalty(request: Request, api: ApiDep) -> Response:
    program = await api.get("/api/v1/loyalty/program")
    return await _page(request, api, program, {}, request.query_params.get("saved") == "1")


def _tiers_from(form: Any) -> list[dict[str, Any]]:
    tiers = []
    for i in range(TIER_ROWS + 1):
        name = str(form.get(f"tier_name_{i}", "")).strip()
        level = str(form.get(f"tier_level_{i}", "")).strip()
        if not name and not level:
            continue
        tiers.append(
            {
                "level": level or None,
                "name": name,
                "min_spend": str(form.get(f"tier_min_spend_{i}", "") or "0"),
                "min_orders": str(form.get(f"tier_min_orders_{i}", "") or "0"),
                "discount": str(form.get(f"tier_discount_{i}", "") or "100"),
            }
        )
    return tiers


@router.post("/loyalty", response_class=HTMLResponse)
async def save_programme(request: Request, api: ApiDep) -> Response:
    """The programme as it is, with what the form changes; the API validates it (thresholds rise with
    level, discounts never rise) and its message is shown next to the field it names."""
    form = await request.form()
    program = await api.get("/api/v1/loyalty/program")
    program["earn_rate"] = str(form.get("earn_rate", program["earn_rate"]))
    program["tiers"] = _tiers_from(form)
    program["signin"] = {**program["signin"], "daily_points": str(form.get("daily_points", "0") or "0")}
    days = str(form.get("expiry_days", "")).strip()
    notice = {k: v for k, v in program["expiry"].items() if k == "notice_days"}
    program["expiry"] = {"mode": "rolling", "days": days, **notice} if days else {"mode": "none", **notice}
    answer = await api.call("PUT", "/api/v1/loyalty/program", json=program)
    if not answer.ok:
        errors = field_errors(answer)
        if "tier" in errors.get("_", ""):  # the rules across tiers: shown by the tiers table
            errors["tiers"] = errors.pop("_")
        return await _page(request, api, program, errors, False)
    return redirect("/console/loyalty?saved=1")


@router.get("/activities", response_class=HTMLResponse)
async def activities(request: Request, api: ApiDep) -> Response:
    listed = (await api.get("/api/v1/activities"))["items"]
    stats = await asyncio.gather(*(api.get(f"/api/v1/activities/{a['id']}/stats") for a in listed[:30]))
    return render(request, "activities.html", activities=list(zip(listed, stats, strict=False)))


@router.get("/activities/{activity_id}", response_class=HTMLResponse)
async def activity(activity_id: str, request: Request, api: ApiDep) -> Response:
    found, stats = await asyncio.gather(
        api.get(f"/api/v1/activities/{activity_id}"), api.get(f"/api/v1/activities/{activity_id}/stats")
    )
    charts = {
        question: {
            "type": "bar",
            "labels": list(counts),
            "series": [{"label": question, "data": list(counts.values())}],
        }
        for question, counts in stats["answers"].items()
    }
    if stats["votes"]:
        charts["votes"] = {
            "type": "bar",
            "labels": list(stats["votes"]),
            "series": [{"label": "votes", "data": list(stats["votes"].values())}],
        }
    return render(request, "activity.html", a=found, stats=stats, charts=charts)


@router.post("/activities/{activity_id}/status")
async def activity_status(activity_id: str, request: Request, api: ApiDep) -> Response:
    form = await request.form()
    await api.call("PATCH", f"/api/v1/activities/{activity_id}", json={"status": str(form.get("status", ""))})
    return redirect(f"/console/activities/{activity_id}")
