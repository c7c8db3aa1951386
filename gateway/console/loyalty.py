"""Loyalty: the programme (tiers, earning, sign-in, expiry), rewards, coupon templates and lotteries
(engagement activities: activities.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from gateway.console.base import (
    Api,
    field_errors,
    language,
    optional_number,
    redirect,
    render,
    typed_list,
    whole_number,
)
from gateway.console.session import ApiDep

router = APIRouter(prefix="/console")

TIER_ROWS = 6
GIFTS_SHOWN = 20  # the oldest waiting are on the next pages of the API
# What the loyalty page makes, each with a form: where it is posted, and the form's fields, sent as
# typed (empty ones left out) for the API to check. A lottery's prizes are rows of their own.
CREATABLE: dict[str, str] = {
    "coupon_templates": "/api/v1/coupons/templates",
    "rewards": "/api/v1/loyalty/rewards",
    "lotteries": "/api/v1/loyalty/lotteries",
}
FORM_FIELDS: dict[str, tuple[str, ...]] = {
    "coupon_templates": (
        "name",
        "kind",
        "threshold",
        "amount",
        "percent_off",
        "valid_days",
        "per_customer_limit",
        "total_limit",
    ),
    "rewards": (
        "name",
        "kind",
        "points_cost",
        "cash",
        "stock",
        "min_tier_level",
        "per_member_limit",
        "coupon_template_id",
    ),
    "lotteries": ("name", "cost_points", "free_draws_per_day", "points_budget"),
}
PRIZE_ROWS = 6
PRIZE_FIELDS = ("name", "percent", "points", "coupon_template_id", "stock")
# What each form starts from.
FORM_START: dict[str, dict[str, str]] = {
    "coupon_templates": {"kind": "spend_save", "valid_days": "30"},
    "rewards": {"kind": "gift"},
    "lotteries": {"cost_points": "20", "free_draws_per_day": "1"},
}


def probability(percent: str) -> str:
    """A chance typed in percent (`12.5`) as the API's probability (`0.125`); what is not a number goes
    as typed, for the API to refuse by the field's name."""
    try:
        return f"{Decimal(percent.strip().rstrip('%％')) / 100:f}"
    except ArithmeticError:
        return percent


def prizes_from_form(form: dict[str, str]) -> list[dict[str, Any]]:
    """A lottery's prize rows (`prize_<field>_<row>`), those with a name: points or a coupon each, the
    chance in percent, the stock empty for no limit."""
    prizes = []
    for row in range(PRIZE_ROWS):
        typed = {field: form.get(f"prize_{field}_{row}", "") for field in PRIZE_FIELDS}
        if not typed["name"]:
            continue
        prize: dict[str, Any] = {"name": typed["name"], "probability": probability(typed["percent"])}
        if typed["points"]:
            prize["points"] = whole_number(typed["points"])
        if typed["coupon_template_id"]:
            prize["coupon_template_id"] = typed["coupon_template_id"]
        if typed["stock"]:
            prize["stock"] = whole_number(typed["stock"])
        prizes.append(prize)
    return prizes


def _plain(value: object) -> str:
    """`20.00` → `20`, `8.50` → `8.5`: how an amount reads in 满200减20."""
    text = f"{Decimal(str(value)):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def coupon_terms(template: dict[str, Any], lang: str) -> str:
    """A coupon template's terms as a shop owner writes them: 满200减20, 无门槛减10, 9折 (10 % off)."""
    kind, amount, threshold, percent = (
        template["kind"],
        template.get("amount"),
        template.get("threshold"),
        template.get("percent_off"),
    )
    if lang == "en":
        if kind == "spend_save":
            return f"{_plain(amount)} off orders of {_plain(threshold)}+"
        return f"{_plain(amount)} off" if kind == "no_threshold" else f"{percent}% off"
    if kind == "spend_save":
        return f"满{_plain(threshold)}减{_plain(amount)}"
    return (
        f"无门槛减{_plain(amount)}"
        if kind == "no_threshold"
        else f"{_plain(Decimal(100 - (percent or 0)) / 10)}折"
    )


async def _page(
    request: Request,
    api: Api,
    program: dict[str, Any],
    errors: dict[str, str],
    saved: bool,
    *,
    placing: bool = False,
    filled: dict[str, dict[str, str]] | None = None,
) -> Response:
    rewards, templates, lotteries, to_send = await asyncio.gather(
        api.get("/api/v1/loyalty/rewards"),
        api.get("/api/v1/coupons/templates"),
        api.get("/api/v1/loyalty/lotteries"),
        api.get("/api/v1/loyalty/redemptions", status="pending", limit=GIFTS_SHOWN),
    )
    tiers = list(program.get("tiers", []))
    # Who each gift goes to, by name: one profile read per member, at once (at most GIFTS_SHOWN).
    profiles = await asyncio.gather(
        *(api.call("GET", f"/api/v1/customers/{r['customer_id']}") for r in to_send["items"])
    )
    for gift, profile in zip(to_send["items"], profiles, strict=True):
        known = profile.body if profile.ok else {}
        gift["member_name"] = known.get("name") or known.get("nick")
        gift["member_city"] = " ".join(filter(None, (known.get("province"), known.get("city"))))
    return render(
        request,
        "loyalty.html",
        status_code=422 if errors else 200,
        program=program,
        tiers=tiers + [{}] * max(TIER_ROWS - len(tiers), 1),
        rewards=rewards["items"],
        templates=templates["items"],
        coupon_terms=lambda template: coupon_terms(template, language(request)),
        lotteries=lotteries["items"],
        to_send=to_send["items"],
        more_to_send=bool(to_send["next_cursor"]),
        errors=errors,
        saved=saved,
        placing=placing,
        filled={what: (filled or {}).get(what) or FORM_START[what] for what in FORM_FIELDS},
        prize_rows=range(PRIZE_ROWS),
    )


@router.get("/loyalty", response_class=HTMLResponse)
async def loyalty(request: Request, api: ApiDep) -> Response:
    program = await api.get("/api/v1/loyalty/program")
    saved = request.query_params.get("saved")
    return await _page(request, api, program, {}, saved in ("1", "tiers"), placing=saved == "tiers")


def _streak_bonuses(typed: str) -> list[dict[str, Any]] | str:
    """连续签到奖励 typed as "7:20, 30:100" (days:points; a Chinese colon or comma too). What does not
    read so goes to the API as typed, and its message is shown by the sign-in field."""
    bonuses: list[dict[str, Any]] = []
    for pair in typed_list(typed):
        days, sep, points = pair.replace("：", ":").partition(":")
        if not sep:
            return typed
        bonuses.append({"days": whole_number(days), "points": whole_number(points)})
    return bonuses


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
                "perks": typed_list(str(form.get(f"tier_perks_{i}", ""))),
            }
        )
    return tiers


def _expiry_from(form: FormData, before: dict[str, Any]) -> dict[str, Any]:
    """The expiry the form chose: never, N days after the points were earned, or every year on a date
    (积分每年清零); the fields of the other modes are left out. A form without the choice keeps `before`."""
    mode = str(form.get("expiry_mode", "")).strip()
    if not mode:
        return before
    fields = {"rolling": ("days",), "annual": ("month", "day")}.get(mode, ())
    expiry: dict[str, Any] = {"mode": mode}
    for name in (*fields, "notice_days"):
        value = str(form.get(f"expiry_{name}", "")).strip()
        if value:
            expiry[name] = value
    return expiry


@router.post("/loyalty", response_class=HTMLResponse)
async def save_programme(request: Request, api: ApiDep) -> Response:
    """The programme as it is, with what the form changes; the API validates it (thresholds rise with
    level, discounts never rise) and its message is shown next to the field it names."""
    form = await request.form()
    program = await api.get("/api/v1/loyalty/program")
    program["earn_rate"] = str(form.get("earn_rate", program["earn_rate"]))
    program["tiers"] = _tiers_from(form)
    program["signin"] = {**program["signin"], "daily_points": str(form.get("daily_points", "0") or "0")}
    if "streak_bonuses" in form:
        program["signin"]["streak_bonuses"] = _streak_bonuses(str(form["streak_bonuses"]))
    program["expiry"] = _expiry_from(form, program["expiry"])
    answer = await api.call("PUT", "/api/v1/loyalty/program", json=program)
    if not answer.ok:
        errors = field_errors(answer)
        said = str(answer.body.get("detail", "")) if isinstance(answer.body, dict) else ""
        if "_" in errors and "tier" in said:  # the rules across tiers (as the API words them): by the table
            errors["tiers"] = errors.pop("_")
        return await _page(request, api, program, errors, False)
    placing = answer.headers.get("X-Laoke-Tier-Placement") == "started"
    return redirect(f"/console/loyalty?saved={'tiers' if placing else '1'}")


@router.post("/loyalty/rewards/{reward_id}", response_class=HTMLResponse)
async def save_reward(reward_id: str, request: Request, api: ApiDep) -> Response:
    """A reward restocked (empty: unlimited) or taken off sale (下架) and back."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    body = {"stock": optional_number(form.get("stock", "")), "active": form.get("active") != "false"}
    return await _patched(request, api, f"/api/v1/loyalty/rewards/{reward_id}", body, "rewards", "reward")


@router.post("/loyalty/coupon_templates/{template_id}", response_class=HTMLResponse)
async def limit_coupon_template(template_id: str, request: Request, api: ApiDep) -> Response:
    """How many of a coupon may go out in all (empty: no limit), or 停发: none more than were issued."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    if form.get("stop"):
        issued = (await api.get(f"/api/v1/coupons/templates/{template_id}"))["issued"]
        body: dict[str, Any] = {"total_limit": issued}
    else:
        body = {"total_limit": optional_number(form.get("total_limit", ""))}
    path = f"/api/v1/coupons/templates/{template_id}"
    return await _patched(request, api, path, body, "coupon-templates", "coupon_template")


@router.post("/loyalty/redemptions/{redemption_id}", response_class=HTMLResponse)
async def settle_redemption(redemption_id: str, request: Request, api: ApiDep) -> Response:
    """A gift marked sent (with the tracking number as its note) or called off (points and stock back)."""
    form = await request.form()
    body = {"status": str(form.get("status", "")), "note": str(form.get("note", "")).strip() or None}
    path = f"/api/v1/loyalty/redemptions/{redemption_id}"
    return await _patched(request, api, path, body, "gifts", "redemptions")


@router.post("/loyalty/coupon_templates/{template_id}/terms", response_class=HTMLResponse)
async def change_coupon_terms(template_id: str, request: Request, api: ApiDep) -> Response:
    """A coupon template's terms corrected before any is issued (the API refuses it after: issued
    coupons keep the terms they were issued with)."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    body = {
        "kind": form.get("kind", ""),
        "threshold": form.get("threshold") or None,
        "amount": form.get("amount") or None,
        "percent_off": optional_number(form.get("percent_off", "")),
        "valid_days": optional_number(form.get("valid_days", "")),
    }
    path = f"/api/v1/coupons/templates/{template_id}"
    return await _patched(request, api, path, body, "coupon-templates", "coupon_template")


async def _patched(
    request: Request, api: Api, path: str, body: dict[str, Any], card: str, error_key: str
) -> Response:
    """A change to one row of the page: back to its card, or the page with the API's refusal there."""
    answer = await api.call("PATCH", path, json=body)
    if answer.ok:
        return redirect(f"/console/loyalty#{card}")
    program = await api.get("/api/v1/loyalty/program")
    return await _page(request, api, program, {error_key: answer.error}, False)


async def _create_from_form(request: Request, api: Api, what: str) -> tuple[bool, dict[str, str], str]:
    """Create from a form: (created, the fields as typed, the API's error)."""
    fields = {name: str(value).strip() for name, value in (await request.form()).items()}
    body: dict[str, Any] = {name: fields[name] for name in FORM_FIELDS[what] if fields.get(name)}
    if what == "lotteries":
        body["prizes"] = prizes_from_form(fields)
    answer = await api.call("POST", CREATABLE[what], json=body)
    return answer.ok, fields, "" if answer.ok else answer.error


@router.post("/loyalty/{what}", response_class=HTMLResponse)
async def create_in_loyalty(what: str, request: Request, api: ApiDep) -> Response:
    if what not in CREATABLE:
        return redirect("/console/loyalty")
    made, fields, problem = await _create_from_form(request, api, what)
    if made:
        return redirect("/console/loyalty")
    program = await api.get("/api/v1/loyalty/program")
    return await _page(request, api, program, {what: problem}, False, filled={what: fields})


@router.post("/loyalty/lotteries/{lottery_id}", response_class=HTMLResponse)
async def change_lottery(lottery_id: str, request: Request, api: ApiDep) -> Response:
    """A lottery stopped or restarted, and its points budget changed (empty: no cap)."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    body = {
        "active": form.get("active") != "false",
        "points_budget": optional_number(form.get("points_budget", "")),
    }
    return await _patched(
        request, api, f"/api/v1/loyalty/lotteries/{lottery_id}", body, "lotteries", "lottery"
    )
