"""Engagement activities (日常互动): the list, a form to create one of any type, an activity's page with
its rules and results, and the box that changes it.

The form writes what a shop owner would say ("您的肤质？ = 干 / 油 / 混合", "10:00-10:10, 20:00-20:10")
and turns it into the API's body; the API checks it, and its refusals are shown next to the fields they
name. A JSON box beside the form takes any body the API does, for what the form does not offer.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, get_args
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.console.base import (
    Api,
    currency_sign,
    field_errors,
    optional_number,
    redirect,
    render,
    shop_time,
    shop_zone,
    whole_number,
    words,
)
from gateway.console.i18n import ZH_VALUES
from gateway.console.session import ApiDep
from laoke.contracts.loyalty import ActivityType

router = APIRouter(prefix="/console")

TYPES = get_args(ActivityType)
PARTICIPATIONS_SHOWN = 20  # on an activity's page, newest first
LISTED = 30  # activities a page, each with its figures (the next ones a click away)
# The form's boxes that only some types have (the page shows them for those types only).
TYPE_BOXES: dict[str, tuple[str, ...]] = {
    "item_id": ("favorite_item", "add_to_cart"),
    "questions": ("survey",),
    "options": ("vote",),
    "slots": ("grab",),
    "slot_stock": ("grab",),
    "passphrase": ("grab",),
    "price": ("guess_price",),
    "tolerance": ("guess_price",),
    "tasks": ("task_chain",),
}
# Number boxes every type has, empty meaning the API's default (for the limits and caps: none).
NUMBER_BOXES = ("reward_points", "cost_points", "per_member_daily_limit", "budget_points", "stock")
CHAIN_TASKS = ("favorite_shop", "favorite_item", "add_to_cart", "signin", "order", "activity")
JSON_EXAMPLE = {
    "type": "favorite_shop",
    "title": "收藏店铺得积分",
    "starts_at": "2026-12-01T00:00:00+08:00",
    "ends_at": "2026-12-31T00:00:00+08:00",
    "status": "live",
    "reward_points": 10,
}
# What a live activity's change box offers (the API refuses the rest once members take part under it).
CHANGEABLE_WHEN_LIVE = ("title", "description", "ends_at", "budget_points", "stock", "eligibility")
# Rules every type has, shown in the box even when empty (null: no limit, no cap) so they can be set.
ALWAYS_IN_THE_BOX = frozenset(
    {"description", "per_member_limit", "per_member_daily_limit", "reward_coupon_template_id"}
    | {"cost_points", "budget_points", "stock", "eligibility", "reward_points"}
)

_KEY = re.compile(r"^([a-z][a-z0-9_]{0,39})\s*[:：]\s*(.+)$")
_SLOT = re.compile(r"(\d{1,2}[:：]\d{2})\s*[-–—~～至到]\s*(\d{1,2}[:：]\d{2})")
_TASK_NAMES = {name: name for name in CHAIN_TASKS} | {
    label: name for name, label in ZH_VALUES["chain_task"].items()
}


class FormProblem(ValueError):
    """What a box holds cannot be read (said next to it, the API not asked): the message in the page's
    language, then what was typed."""

    def __init__(self, field: str, message: str, typed: str = "") -> None:
        super().__init__(message)
        self.field, self.message, self.typed = field, message, typed

    def said(self, t: Callable[[str], str]) -> str:
        return f"{t(self.message)}: {self.typed}" if self.typed else t(self.message)


def _keyed(line: str, index: int, prefix: str) -> tuple[str, str]:
    """`skin_type: 您的肤质？` names its key (the customer attribute an answer is kept as); a line
    without one is numbered (`q1`, `o2`)."""
    named = _KEY.match(line)
    return (named.group(1), named.group(2).strip()) if named else (f"{prefix}{index}", line)


def questions_from(typed: str) -> list[dict[str, Any]]:
    """One question a line: `您的肤质？ = 干 / 油 / 混合`; a `*` in front for several answers; no `=`
    for an answer in words; `skin_type:` in front to name the attribute the answer is kept as."""
    questions = []
    for index, line in enumerate((line.strip() for line in typed.splitlines() if line.strip()), start=1):
        several = line[0] in "*＊"
        key, question = _keyed(line.lstrip("*＊ "), index, "q")
        text, *choices = re.split(r"[=＝]", question, maxsplit=1)
        options = (
            [choice.strip() for choice in re.split(r"[/／]", choices[0]) if choice.strip()] if choices else []
        )
        kind = "multiple" if several else "single" if choices else "text"
        questions.append({"id": key, "text": text.strip(), "kind": kind, "options": options})
    return questions


def options_from(typed: str) -> list[dict[str, str]]:
    """A vote's options, one a line (`green_tea: 龙井` names the option's key)."""
    lines = (line.strip() for line in typed.splitlines() if line.strip())
    keyed = (_keyed(line, index, "o") for index, line in enumerate(lines, start=1))
    return [{"id": key, "label": label} for key, label in keyed]


def slots_from(typed: str) -> list[dict[str, str]]:
    """`10:00-10:10, 20:00-20:10` (any dash, 至 or 到 between; any comma between slots)."""
    slots = [
        {"start": start.replace("：", ":").zfill(5), "end": end.replace("：", ":").zfill(5)}
        for start, end in _SLOT.findall(typed)
    ]
    if _SLOT.sub("", typed).strip(" ,，、;；\n\r\t") or (typed.strip() and not slots):
        raise FormProblem("slots", "write the slots as 10:00-10:10, 20:00-20:10")
    return slots


def tasks_from(typed: str) -> list[dict[str, str]]:
    """A chain's tasks, one a line: `收藏店铺`, `加购 商品ID`, `参加活动 act_…` (or the English keys)."""
    tasks = []
    for line in (line.strip() for line in typed.splitlines() if line.strip()):
        name, _, target = line.partition(" ")
        kind = _TASK_NAMES.get(name)
        if kind is None:
            raise FormProblem("tasks", "not one of the tasks listed", name)
        task = {"type": kind}
        if target.strip():
            task["activity_id" if kind == "activity" else "item_id"] = target.strip()
        tasks.append(task)
    return tasks


def activity_from_form(form: dict[str, str], zone: ZoneInfo) -> dict[str, Any]:
    """The API's body for what the form holds: the boxes of the chosen type only, empty ones left to
    the API's defaults. Raises FormProblem for a box that cannot be read."""
    kind = form.get("type", "")
    body: dict[str, Any] = {
        "type": kind,
        "title": form.get("title", ""),
        "starts_at": shop_time(form.get("starts_at", ""), zone),
        "ends_at": shop_time(form.get("ends_at", ""), zone),
        "status": "live" if form.get("go_live") else "draft",
        "per_member_limit": optional_number(form.get("per_member_limit", "")),
        "eligibility": {
            "segment_id": form.get("segment_id") or None,
            "min_tier_level": whole_number(form.get("min_tier_level") or "0"),
        },
    }
    if form.get("description"):
        body["description"] = form["description"]
    if form.get("reward_coupon_template_id"):
        body["reward_coupon_template_id"] = form["reward_coupon_template_id"]
    for name in NUMBER_BOXES:
        if form.get(name, "").strip():
            body[name] = whole_number(form[name])
    readers = {"questions": questions_from, "options": options_from, "slots": slots_from, "tasks": tasks_from}
    for name, types in TYPE_BOXES.items():
        typed = form.get(name, "").strip()
        if kind not in types or not typed:
            continue
        if name in readers:
            body[name] = readers[name](typed)
        elif name == "slot_stock":
            body[name] = whole_number(typed)
        else:
            body[name] = typed
    return body


def form_start(zone: ZoneInfo) -> dict[str, str]:
    """A new activity: from the next hour for a week, once per member."""
    start = (datetime.now(zone) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(days=7)
    return {
        "type": "favorite_shop",
        "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": end.strftime("%Y-%m-%dT%H:%M"),
        "per_member_limit": "1",
        "reward_points": "10",
    }


async def _list_page(
    request: Request,
    api: Api,
    filled: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    draft: str | None = None,
    json_error: str | None = None,
) -> Response:
    cursor = request.query_params.get("cursor")
    listed, program, segments, coupons = await asyncio.gather(
        api.get("/api/v1/activities", limit=LISTED, cursor=cursor),
        api.get("/api/v1/loyalty/program"),
        api.get("/api/v1/segments"),
        api.get("/api/v1/coupons/templates"),
    )
    items = listed["items"]
    stats = await asyncio.gather(*(api.get(f"/api/v1/activities/{a['id']}/stats") for a in items))
    return render(
        request,
        "activities.html",
        status_code=422 if errors or json_error else 200,
        activities=list(zip(items, stats, strict=True)),
        next_page="?" + urlencode({"cursor": listed["next_cursor"]}) if listed["next_cursor"] else None,
        types=TYPES,
        type_boxes=TYPE_BOXES,
        chain_tasks=CHAIN_TASKS,
        tiers=sorted(program.get("tiers", []), key=lambda tier: tier["level"]),
        segments=segments["items"],
        coupons=coupons["items"],
        filled=filled or form_start(shop_zone(request)),
        errors=errors or {},
        draft=draft or json.dumps(JSON_EXAMPLE, ensure_ascii=False, indent=1),
        json_error=json_error,
    )


@router.get("/activities", response_class=HTMLResponse)
async def activities(request: Request, api: ApiDep) -> Response:
    return await _list_page(request, api)


@router.post("/activities", response_class=HTMLResponse)
async def create_activity(request: Request, api: ApiDep) -> Response:
    """From the form, or (with `body`) from the JSON box; made, on to its page."""
    form = {name: str(value).strip() for name, value in (await request.form()).items()}
    if "body" in form:
        try:
            body = json.loads(form["body"])
        except ValueError as exc:
            return await _list_page(request, api, draft=form["body"], json_error=f"not valid JSON: {exc}")
    else:
        try:
            body = activity_from_form(form, shop_zone(request))
        except FormProblem as problem:
            return await _list_page(request, api, form, {problem.field: problem.said(words(request)[0])})
    answer = await api.call("POST", "/api/v1/activities", json=body)
    if answer.ok:
        return redirect(f"/console/activities/{answer.body['id']}")
    if "body" in form:
        return await _list_page(request, api, draft=form["body"], json_error=answer.error)
    errors = field_errors(answer)
    if "eligibility" in errors:  # its segment and tier are two boxes of one field
        errors["segment_id"] = errors.pop("eligibility")
    return await _list_page(request, api, form, errors)


def activity_changes(found: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """What the change box starts from: a draft's whole definition but its type, a live one's changeable
    fields; times on the shop's clock, as the owner would type them."""
    # Left out, a field keeps its value: what another type of activity has (questions on a grab) stays out
    # of the box, and so does a price guess's price, hidden until revealed (sent back as null, it would go).
    rules = {
        name: value
        for name, value in found["rules"].items()
        if name in ALWAYS_IN_THE_BOX or value not in (None, [])
    }
    fields = {
        "title": found["title"],
        "starts_at": datetime.fromisoformat(found["starts_at"]).astimezone(zone).isoformat(),
        "ends_at": datetime.fromisoformat(found["ends_at"]).astimezone(zone).isoformat(),
        **rules,
    }
    if found["status"] != "draft":
        fields = {name: fields.get(name) for name in CHANGEABLE_WHEN_LIVE}
    return fields


def answer_text(answer: dict[str, Any], rules: dict[str, Any], currency: str) -> str:
    """What a member answered, as the page shows it: a survey's answers, a vote's option by its label, a
    guess as money, an invitation by its code."""
    if "answers" in answer:
        given = answer["answers"].values()
        return " · ".join("、".join(value) if isinstance(value, list) else str(value) for value in given)
    if "option" in answer:
        labels = {option["id"]: option["label"] for option in rules.get("options", [])}
        return labels.get(answer["option"], answer["option"])
    if "guess" in answer:
        return f"{currency}{answer['guess']}"
    return str(answer.get("invite_code", ""))


async def _activity_page(
    request: Request, api: Api, activity_id: str, box: str | None = None, box_error: str | None = None
) -> Response:
    cursor = request.query_params.get("cursor")
    found, stats, program, taken_part = await asyncio.gather(
        api.get(f"/api/v1/activities/{activity_id}"),
        api.get(f"/api/v1/activities/{activity_id}/stats"),
        api.get("/api/v1/loyalty/program"),
        api.get(
            f"/api/v1/activities/{activity_id}/participations", limit=PARTICIPATIONS_SHOWN, cursor=cursor
        ),
    )
    rules = found["rules"]
    segment_id, coupon_id = rules["eligibility"].get("segment_id"), rules.get("reward_coupon_template_id")
    segment = await api.call("GET", f"/api/v1/segments/{segment_id}") if segment_id else None
    coupon = await api.call("GET", f"/api/v1/coupons/templates/{coupon_id}") if coupon_id else None
    tiers = {tier["level"]: tier["name"] for tier in program.get("tiers", [])}
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
            "series": [{"label": words(request)[0]("Votes"), "data": list(stats["votes"].values())}],
        }
    if box is None and found["status"] != "ended":
        box = json.dumps(activity_changes(found, shop_zone(request)), ensure_ascii=False, indent=1)
    return render(
        request,
        "activity.html",
        status_code=422 if box_error else 200,
        a=found,
        rules=rules,
        stats=stats,
        charts=charts,
        error=request.query_params.get("error"),
        segment=segment.body if segment and segment.ok else None,
        coupon=coupon.body if coupon and coupon.ok else None,
        min_tier=tiers.get(rules["eligibility"].get("min_tier_level") or 0),
        box=box,
        box_error=box_error,
        participations=taken_part["items"],
        answer_of=lambda answer: answer_text(answer, rules, currency_sign(request)),
        next_page="?" + urlencode({"cursor": taken_part["next_cursor"]})
        if taken_part["next_cursor"]
        else None,
    )


@router.get("/activities/{activity_id}", response_class=HTMLResponse)
async def activity(activity_id: str, request: Request, api: ApiDep) -> Response:
    return await _activity_page(request, api, activity_id)


@router.post("/activities/{activity_id}/edit", response_class=HTMLResponse)
async def change_activity(activity_id: str, request: Request, api: ApiDep) -> Response:
    """The change box sent as a PATCH: back to the page, or the page with the box as typed and the
    API's refusal above it."""
    draft = str((await request.form()).get("body", ""))
    try:
        body = json.loads(draft)
    except ValueError as exc:
        return await _activity_page(request, api, activity_id, draft, f"not valid JSON: {exc}")
    if not isinstance(body, dict):
        return await _activity_page(request, api, activity_id, draft, "not valid JSON: give an object {…}")
    answer = await api.call("PATCH", f"/api/v1/activities/{activity_id}", json=body)
    if answer.ok:
        return redirect(f"/console/activities/{activity_id}")
    return await _activity_page(request, api, activity_id, draft, answer.error)


@router.post("/activities/{activity_id}/status")
async def activity_status(activity_id: str, request: Request, api: ApiDep) -> Response:
    form = await request.form()
    body = {"status": str(form.get("status", ""))}
    answer = await api.call("PATCH", f"/api/v1/activities/{activity_id}", json=body)
    if not answer.ok:  # e.g. ended meanwhile in another tab: said on the page, not swallowed
        return redirect(f"/console/activities/{activity_id}?{urlencode({'error': answer.error})}")
    return redirect(f"/console/activities/{activity_id}")
