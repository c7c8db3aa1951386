"""Segments: the rule builder with its live size, a segment's portrait, export to CSV."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from gateway.console.base import Answer, Api, csv_download, field_errors, redirect, render, typed_list, words
from gateway.console.i18n import ZH, ZH_VALUES
from gateway.console.session import ApiDep

router = APIRouter(prefix="/console/segments")

ROWS = 6
# The builder's choices; anything else is written as JSON in the advanced box.
FIELDS = (
    "lifecycle",
    "rfm_segment",
    "r_score",
    "f_score",
    "m_score",
    "recency_days",
    "orders_count",
    "total_spent",
    "avg_order_value",
    "tier",
    "tier_level",
    "points_balance",
    "tags",
    "group",
    "province",
    "city",
    "gender",
    "age",
    "birthday_month",
    "channel",
    "carted",
    "favorited",
    "p_alive",
    "clv_365d",
    "attributes.",
)
OPS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "between",
    "has",
    "has_any",
    "has_none",
    "within_days",
)


class RuleProblem(ValueError):
    pass


# What an owner types for the values the page itself shows in Chinese (沉睡, 女), as the API spells them.
_TYPED = {
    "lifecycle": {ZH[value]: value for value in ("new", "active", "sleeping", "churned", "prospect")},
    "gender": {label: value for value, label in ZH_VALUES["gender"].items()},
}


def _value(raw: str, field: str = "", groups: Mapping[str, str] | None = None) -> Any:
    """What a value box holds: JSON when it reads as JSON (numbers, lists), otherwise the text itself.
    Groups are typed by name, a comma between (`电话回访，VIP`), and sent by id."""
    raw = raw.strip()
    if field == "group":
        by_name = {name: group_id for group_id, name in (groups or {}).items()}
        return [by_name.get(name, name) for name in typed_list(raw)]
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw
    typed = _TYPED.get(field, {})
    if isinstance(parsed, list):
        return [typed.get(item, item) if isinstance(item, str) else item for item in parsed]
    return typed.get(parsed, parsed) if isinstance(parsed, str) else parsed


def rule_from_form(form: FormData, groups: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The rule the builder's rows (or its JSON box) hold; `groups` the shop's group names by id."""
    advanced = str(form.get("rule_json", "")).strip()
    if advanced:
        try:
            parsed = json.loads(advanced)
        except ValueError as exc:
            raise RuleProblem(f"the rule is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise RuleProblem("the rule must be a JSON object")
        return parsed
    conditions = []
    for i in range(ROWS):
        field = str(form.get(f"field_{i}", "")).strip()
        if not field:
            continue
        if field == "attributes.":
            field += str(form.get(f"attribute_{i}", "")).strip()
        conditions.append(
            {
                "field": field,
                "op": str(form.get(f"op_{i}", "eq")),
                "value": _value(str(form.get(f"value_{i}", "")), field, groups),
            }
        )
    if not conditions:
        raise RuleProblem("add at least one condition")
    return {str(form.get("combine", "all")): conditions}


def _shown(part: dict[str, Any], groups: Mapping[str, str]) -> str:
    """A condition's value as its box shows it: groups by name, a list or number as JSON."""
    value = part["value"]
    if part["field"] == "group" and isinstance(value, list):
        return "，".join(groups.get(str(group_id), str(group_id)) for group_id in value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def rows_of(
    rule: dict[str, Any] | None, groups: Mapping[str, str] | None = None
) -> tuple[str, list[dict[str, Any]], str]:
    """The builder rows for a rule it can show (one level of all/any), else the JSON for the box."""
    if not rule:
        return "all", [], ""
    combine, parts = ("all", [rule]) if "field" in rule else next(iter(rule.items()))
    simple = combine in ("all", "any") and isinstance(parts, list) and len(parts) <= ROWS
    if simple and all(isinstance(p, dict) and set(p) == {"field", "op", "value"} for p in parts):
        rows = [
            {
                "field": "attributes." if str(p["field"]).startswith("attributes.") else p["field"],
                "attribute": str(p["field"]).removeprefix("attributes."),
                "op": p["op"],
                "value": _shown(p, groups or {}),
            }
            for p in parts
        ]
        return combine, rows, ""
    return "all", [], json.dumps(rule, ensure_ascii=False, indent=2)


def _builder(
    request: Request,
    name: str,
    rule: dict[str, Any] | None,
    error: str | None = None,
    status_code: int = 200,
    editing: str | None = None,
    groups: Mapping[str, str] | None = None,
) -> Response:
    """The rule builder; `editing` a saved segment's id, whose form then saves over it."""
    combine, rows, advanced = rows_of(rule, groups)
    return render(
        request,
        "segment_new.html",
        status_code=status_code,
        editing=editing,
        name=name,
        combine=combine,
        rows=rows + [{}] * (ROWS - len(rows)),
        advanced=advanced,
        fields=FIELDS,
        ops=OPS,
        error=error,
        group_names=list((groups or {}).values()),
    )


async def group_names(api: Api) -> dict[str, str]:
    """The shop's groups, name by id: a rule on groups is typed and shown by their names."""
    return {group["id"]: group["name"] for group in (await api.get("/api/v1/groups"))["items"]}


@router.get("", response_class=HTMLResponse)
async def segment_list(request: Request, api: ApiDep) -> Response:
    return render(request, "segments.html", segments=(await api.get("/api/v1/segments"))["items"])


@router.get("/new", response_class=HTMLResponse)
async def new_segment(request: Request, api: ApiDep) -> Response:
    raw = request.query_params.get("rule")
    try:
        rule = json.loads(raw) if raw else None
    except ValueError:
        rule = None
    chosen = rule if isinstance(rule, dict) else None
    return _builder(request, request.query_params.get("name", ""), chosen, groups=await group_names(api))


@router.post("/preview", response_class=HTMLResponse)
async def preview(request: Request, api: ApiDep) -> Response:
    """The live size under the builder (htmx swaps this fragment in as the rule changes)."""
    try:
        rule = rule_from_form(await request.form(), await group_names(api))
    except RuleProblem as exc:
        return render(request, "_preview.html", error=str(exc), result=None)
    answer = await api.call("POST", "/api/v1/segments/preview", json={"rule": rule})
    return render(request, "_preview.html", error=None if answer.ok else answer.error, result=answer.body)


@router.post("", response_class=HTMLResponse)
async def create_segment(request: Request, api: ApiDep) -> Response:
    form = await request.form()
    name = str(form.get("name", "")).strip()
    groups = await group_names(api)
    try:
        rule = rule_from_form(form, groups)
    except RuleProblem as exc:
        return _builder(request, name, None, str(exc), 422, groups=groups)
    answer = await api.call("POST", "/api/v1/segments", json={"name": name, "rule": rule})
    if not answer.ok:
        return _builder(request, name, rule, _said(answer), 422, groups=groups)
    return redirect(f"/console/segments/{answer.body['id']}")


def _said(answer: Answer) -> str:
    errors = field_errors(answer)
    return "; ".join(f"{k}: {v}" if k != "_" else v for k, v in errors.items())


@router.get("/{segment_id}", response_class=HTMLResponse)
async def segment_page(segment_id: str, request: Request, api: ApiDep) -> Response:
    segment, portrait, members, campaigns, groups = await asyncio.gather(
        api.get(f"/api/v1/segments/{segment_id}"),
        api.get("/api/v1/analytics/portrait", segment_id=segment_id),
        api.get(f"/api/v1/segments/{segment_id}/members", limit=20, sort="-total_spent"),
        api.call("GET", "/api/v1/campaigns", params={"segment_id": segment_id}),
        group_names(api),
    )

    t, v = words(request)

    def pie(shares: list[dict[str, Any]], kind: str = "") -> dict[str, Any]:
        return {
            "type": "doughnut",
            "labels": [
                t("unknown") if s["value"] == "unknown" else v(kind, s["value"]) if kind else s["value"]
                for s in shares
            ],
            "series": [{"label": t("Customers"), "data": [s["customers"] for s in shares]}],
        }

    charts = {
        "gender": pie(portrait["gender"], "gender"),
        "age": {**pie(portrait["age_bands"]), "type": "bar"},
        "region": {**pie(portrait["provinces"][:10]), "type": "bar"},
    }
    combine, rows, _ = rows_of(segment["rule"], groups)
    joiner = {"all": t(" and "), "any": t(" or ")}[combine]
    rule_words = joiner.join(
        f"{v('segment_field', r['field'])}{r['attribute'] if r['field'] == 'attributes.' else ''} "
        f"{v('segment_op', r['op'])} {t(r['value']) if r['field'] == 'lifecycle' else r['value']}"
        for r in rows
    )
    return render(
        request,
        "segment.html",
        error=request.query_params.get("error"),
        segment=segment,
        rule_words=rule_words,
        rule_text=json.dumps(segment["rule"], ensure_ascii=False, indent=1),
        charts=charts,
        members=members["items"],
        # Messaging down: the page still shows the segment, without its campaigns.
        campaigns=campaigns.body["items"] if campaigns.ok else None,
    )


@router.get("/{segment_id}/export.csv")
async def export(segment_id: str, request: Request, api: ApiDep) -> Response:
    """Every member, page by page from the API, as CSV (UTF-8 with BOM so Excel reads the Chinese)."""
    await api.get(f"/api/v1/segments/{segment_id}")  # 404 before the download starts
    return csv_download(request, f"/api/v1/segments/{segment_id}/members", {}, f"segment-{segment_id}.csv")


@router.get("/{segment_id}/edit", response_class=HTMLResponse)
async def edit_segment(segment_id: str, request: Request, api: ApiDep) -> Response:
    segment, groups = await asyncio.gather(api.get(f"/api/v1/segments/{segment_id}"), group_names(api))
    return _builder(request, segment["name"], segment["rule"], editing=segment_id, groups=groups)


@router.post("/{segment_id}", response_class=HTMLResponse)
async def save_segment(segment_id: str, request: Request, api: ApiDep) -> Response:
    """A saved segment's new name and rule; its members are recounted at once (segment.entered /
    exited for who moves)."""
    form = await request.form()
    name = str(form.get("name", "")).strip()
    groups = await group_names(api)
    try:
        rule = rule_from_form(form, groups)
    except RuleProblem as exc:
        return _builder(request, name, None, str(exc), 422, editing=segment_id, groups=groups)
    answer = await api.call("PATCH", f"/api/v1/segments/{segment_id}", json={"name": name, "rule": rule})
    if not answer.ok:
        return _builder(request, name, rule, _said(answer), 422, editing=segment_id, groups=groups)
    return redirect(f"/console/segments/{segment_id}")


async def _activities_not_ended(api: Api) -> list[dict[str, Any]]:
    """Every draft and live activity, page by page (what loyalty cannot tell, when it is down, holds
    no delete up)."""
    found: list[dict[str, Any]] = []
    for status in ("draft", "live"):
        cursor = None
        while True:
            params = {"status": status, "limit": 500} | ({"cursor": cursor} if cursor else {})
            answer = await api.call("GET", "/api/v1/activities", params=params)
            if not answer.ok:
                return found
            found += answer.body["items"]
            if not (cursor := answer.body["next_cursor"]):
                break
    return found


@router.post("/{segment_id}/delete")
async def delete_segment(segment_id: str, request: Request, api: ApiDep) -> Response:
    """Refused while a campaign is scheduled to the segment (it would fail when its time came) or an
    activity not ended is open only to its members (nobody could take part any more)."""
    campaigns, activities = await asyncio.gather(
        api.call("GET", "/api/v1/campaigns", params={"segment_id": segment_id, "limit": 200}),
        _activities_not_ended(api),
    )
    scheduled = (
        [c["name"] for c in campaigns.body["items"] if c["status"] == "scheduled"] if campaigns.ok else []
    )
    open_to_it = [
        a["title"]
        for a in activities
        if (a["rules"].get("eligibility") or {}).get("segment_id") == segment_id
    ]
    t, _ = words(request)
    if scheduled:
        error = t("Scheduled campaigns go to this segment; cancel them first: {names}").format(
            names="、".join(scheduled)
        )
        return redirect(f"/console/segments/{segment_id}?{urlencode({'error': error})}")
    if open_to_it:
        error = t("Activities not ended are open only to this segment; end them first: {names}").format(
            names="、".join(open_to_it)
        )
        return redirect(f"/console/segments/{segment_id}?{urlencode({'error': error})}")
    answer = await api.call("DELETE", f"/api/v1/segments/{segment_id}")
    if not answer.ok and answer.status != 404:  # gone already (another tab): nothing left to say
        return redirect(f"/console/segments/{segment_id}?{urlencode({'error': answer.error})}")
    return redirect("/console/segments")
