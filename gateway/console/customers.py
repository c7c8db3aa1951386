"""Overview, the RFM grid, and customers (the list and one customer's page)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.console.base import (
    Answer,
    csv_download,
    field_errors,
    redirect,
    render,
    shop_zone,
    typed_list,
    whole_number,
    words,
)
from gateway.console.session import ApiDep
from laoke.kit.ids import new_id

router = APIRouter(prefix="/console")

LIFECYCLES = ("active", "new", "sleeping", "churned", "prospect")
# The eight classes, as segmentation names them (services/segmentation/rfm.py, RfmClass).
RFM_CLASSES = (
    "important_value",
    "important_develop",
    "important_keep",
    "important_retain",
    "general_value",
    "general_develop",
    "general_keep",
    "general_retain",
)
# The orders a customer list can be shown in (segmentation's `sort`), the default first.
CUSTOMER_SORTS = (
    "customer_id",
    "-total_spent",
    "total_spent",
    "-orders_count",
    "orders_count",
    "-last_order_at",
    "last_order_at",
)
PROFILE_FIELDS = ("name", "gender", "birthday", "mobile", "email", "province", "city")


def segment_link(name: str, rule: dict[str, Any]) -> str:
    """A link to the segment builder with this rule filled in."""
    return "/console/segments/new?" + urlencode({"name": name, "rule": json.dumps(rule, ensure_ascii=False)})


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, api: ApiDep) -> Response:
    """The counts at once; the charts over 12 months and the points liability follow
    (`/console/overview/charts`, loaded by htmx) because for a big shop they take longer than the rest."""
    summary, imports, campaigns = await asyncio.gather(
        api.get("/api/v1/rfm/summary"),
        api.get("/api/v1/imports", limit=5),
        api.get("/api/v1/campaigns", limit=5),
    )
    return render(
        request,
        "overview.html",
        summary=summary,
        lifecycles=LIFECYCLES,
        imports=imports["items"],
        campaigns=campaigns["items"],
    )


# How far back the overview's charts look: a year, or (a shop that imported its history) two or three.
CHART_MONTHS = (12, 24, 36)


def calendar_months(now: datetime, zone: ZoneInfo, months: int = 12) -> tuple[datetime, datetime]:
    """The calendar months before this one and this one up to the end of today, `months` in all. Whole
    days, so the same question is asked all day long: for the largest shops segmentation answers it
    from its last count, which a question ending at this second would never find."""
    today = now.astimezone(zone).date()
    months_back = today.year * 12 + today.month - 1 - (months - 1)
    start = datetime(months_back // 12, months_back % 12 + 1, 1, tzinfo=zone)
    tomorrow = today + timedelta(days=1)
    return start, datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)


@router.get("/overview/charts", response_class=HTMLResponse)
async def overview_charts(request: Request, api: ApiDep) -> Response:
    zone = shop_zone(request)  # months begin at the shop's midnight
    asked = request.query_params.get("months", "")
    months = int(asked) if asked.isdecimal() and int(asked) in CHART_MONTHS else CHART_MONTHS[0]
    start, finish = calendar_months(datetime.now(UTC), zone, months)
    analytics, liability = await asyncio.gather(
        api.get(
            "/api/v1/analytics/customers",
            **{
                "from": start.isoformat(),
                "to": finish.isoformat(),
                "interval": "month",
                "timezone": zone.key,
            },
        ),
        api.get("/api/v1/loyalty/liability"),
    )
    buckets = analytics["buckets"]
    labels = [b["start"][:7] for b in buckets]
    t, _ = words(request)
    charts = {
        "growth": {
            "type": "bar",
            "labels": labels,
            "series": [
                {"label": t("New customers"), "data": [b["new_customers"] for b in buckets]},
                {"label": t("Returning customers"), "data": [b["returning_customers"] for b in buckets]},
            ],
        },
        "churn": {
            "type": "line",
            "labels": labels,
            "series": [
                {"label": t("Churn rate %"), "data": [round(100 * b["churn_rate"], 1) for b in buckets]}
            ],
        },
        "revenue": {
            "type": "bar",
            "stacked": True,
            "labels": labels,
            "series": [
                {"label": t("Returning customers"), "data": [float(b["revenue_returning"]) for b in buckets]},
                {"label": t("New customers"), "data": [float(b["revenue_new"]) for b in buckets]},
            ],
        },
    }
    return render(
        request,
        "_overview_charts.html",
        charts=charts,
        liability=liability,
        months=months,
        choices=CHART_MONTHS,
    )


def rfm_bands(config: dict[str, Any], t: Any) -> tuple[dict[int, str], dict[int, str]]:
    """What each R and F score means under the shop's thresholds: R5 "≤30 天", F3 "3–4 单"."""
    days, orders = config["recency_days"], config["frequency"]
    recency = {5: t("≤%d days") % days[0], 1: t(">%d days") % days[3]}
    for score, (low, high) in zip((4, 3, 2), pairwise(days), strict=True):
        recency[score] = t("%d–%d days") % (low + 1, high)
    frequency = {1: t("<%d orders") % orders[0], 5: t("≥%d orders") % orders[3]}
    for score, (low, high) in zip((2, 3, 4), pairwise(orders), strict=True):
        frequency[score] = t("%d orders") % low if high == low + 1 else t("%d–%d orders") % (low, high - 1)
    return recency, frequency


@router.get("/rfm", response_class=HTMLResponse)
async def rfm(request: Request, api: ApiDep) -> Response:
    summary, config = await asyncio.gather(api.get("/api/v1/rfm/summary"), api.get("/api/v1/rfm/config"))
    recency, frequency = rfm_bands(config, words(request)[0])
    grid = summary["grid"]  # rows: R 5 → 1, columns: F 1 → 5
    peak = max((count for row in grid for count in row), default=0) or 1
    cells = [
        [
            {
                "r": 5 - i,
                "f": j + 1,
                "count": count,
                "spend": summary["grid_spend"][i][j],
                "heat": round(count / peak, 3),
                "link": segment_link(
                    f"R{5 - i} F{j + 1}",
                    {
                        "all": [
                            {"field": "r_score", "op": "eq", "value": 5 - i},
                            {"field": "f_score", "op": "eq", "value": j + 1},
                        ]
                    },
                ),
            }
            for j, count in enumerate(row)
        ]
        for i, row in enumerate(grid)
    ]
    classes = [
        {
            "key": key,
            "name": summary["class_names"].get(key, key),
            "count": summary["by_class"].get(key, 0),
            "spend": summary["class_spend"].get(key, "0.00"),
            "link": segment_link(
                summary["class_names"].get(key, key), {"field": "rfm_segment", "op": "eq", "value": key}
            ),
        }
        for key in RFM_CLASSES
    ]
    return render(
        request,
        "rfm.html",
        cells=cells,
        classes=classes,
        summary=summary,
        recency=recency,
        frequency=frequency,
        window_days=config["window_days"],
    )


CUSTOMER_FILTERS = ("lifecycle", "rfm_segment", "tier", "tag", "segment_id", "group_id", "q", "sort")


@router.get("/customers/export.csv")
async def export_customers(request: Request, api: ApiDep) -> Response:
    """The customer list as filtered and sorted on the page, every page of it, as CSV."""
    filters = {k: v for k in CUSTOMER_FILTERS if (v := request.query_params.get(k, ""))}
    await api.get(
        "/api/v1/customers", limit=1, **filters
    )  # a filter the API refuses: its page, not a broken file
    return csv_download(request, "/api/v1/customers", filters, "customers.csv")


@router.get("/customers", response_class=HTMLResponse)
async def customer_list(request: Request, api: ApiDep) -> Response:
    filters = {k: request.query_params.get(k, "") for k in CUSTOMER_FILTERS}
    cursor = request.query_params.get("cursor", "")
    page, segments, groups = await asyncio.gather(
        api.get("/api/v1/customers", limit=50, cursor=cursor, **filters),
        api.get("/api/v1/segments"),
        api.get("/api/v1/groups"),
    )
    chosen = {k: v for k, v in filters.items() if v}

    def sorted_by(sort: str) -> str:
        """This list (its filters, from the first page) in another order."""
        return "?" + urlencode(chosen | {"sort": sort})

    return render(
        request,
        "customers.html",
        page=page,
        filters=filters,
        lifecycles=LIFECYCLES,
        classes=RFM_CLASSES,
        sorts=CUSTOMER_SORTS,
        sorted_by=sorted_by,
        next_page="?" + urlencode(chosen | {"cursor": page["next_cursor"]}) if page["next_cursor"] else None,
        export="/console/customers/export.csv?" + urlencode(chosen),
        segments=segments["items"],
        groups=groups["items"],
    )


async def _customer_page(
    request: Request,
    api: ApiDep,
    customer_id: str,
    errors: dict[str, str] | None = None,
    saved: bool = False,
    typed: dict[str, str] | None = None,
) -> Response:
    profile = await api.get(f"/api/v1/customers/{customer_id}")

    async def optional(path: str, **params: Any) -> Any:
        answer = await api.call("GET", path, params=params)
        return answer.body if answer.ok else None

    orders, member, ledger, coupons, messages, tickets, consent, templates, groups = await asyncio.gather(
        optional("/api/v1/orders", customer_id=customer_id, limit=20),
        optional(f"/api/v1/loyalty/members/{customer_id}"),
        optional(f"/api/v1/loyalty/members/{customer_id}/ledger", limit=20),
        optional(f"/api/v1/loyalty/members/{customer_id}/coupons"),
        optional("/api/v1/messaging/messages", customer_id=customer_id, limit=20),
        optional("/api/v1/feedback", customer_id=customer_id),
        optional(f"/api/v1/customers/{customer_id}/consent"),
        optional("/api/v1/coupons/templates"),
        optional("/api/v1/groups"),
    )
    return render(
        request,
        "customer.html",
        status_code=422 if errors else 200,
        c=profile,
        orders=(orders or {}).get("items", []),
        member=member,
        ledger=(ledger or {}).get("items", []),
        coupons=(coupons or {}).get("items", []),
        messages=(messages or {}).get("items", []),
        tickets=(tickets or {}).get("items", []),
        consent=consent,
        coupon_templates=(templates or {}).get("items", []),
        groups=(groups or {}).get("items", []),
        errors=errors or {},
        saved=saved,
        done=request.query_params.get("done", ""),
        typed=typed or {},
        # One per page shown: sent as the adjustment's Idempotency-Key, so a form sent twice (a double
        # click, a reload that posts again) books the points once.
        request_key=new_id("console"),
        fields=PROFILE_FIELDS,
    )


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(customer_id: str, request: Request, api: ApiDep) -> Response:
    return await _customer_page(request, api, customer_id, saved=request.query_params.get("saved") == "1")


@router.post("/customers/{customer_id}", response_class=HTMLResponse)
async def edit_customer(customer_id: str, request: Request, api: ApiDep) -> Response:
    form = await request.form()
    # Only what the owner changed: a field sent as shown would be marked edited by the shop (orders no
    # longer update it), and shown masked (a key without `pii`) it would overwrite the real value.
    shown = await api.get(f"/api/v1/customers/{customer_id}")
    patch: dict[str, str | None] = {}
    for name in PROFILE_FIELDS:
        typed = str(form.get(name, "")).strip()
        if typed != str(shown.get(name) or ""):
            patch[name] = typed or None  # emptied: cleared
    answer: Answer = await api.call("PATCH", f"/api/v1/customers/{customer_id}", json=patch)
    if not answer.ok:
        return await _customer_page(request, api, customer_id, errors=field_errors(answer))
    return redirect(f"/console/customers/{customer_id}?saved=1")


@router.post("/customers/{customer_id}/points", response_class=HTMLResponse)
async def adjust_points(customer_id: str, request: Request, api: ApiDep) -> Response:
    """Points added or taken by hand (客服补偿, a correction), with the reason the ledger keeps."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    body = {"points": whole_number(form.get("points", "")), "reason": form.get("reason", "")}
    answer = await api.call(
        "POST",
        f"/api/v1/loyalty/members/{customer_id}/adjustments",
        json=body,
        headers={"Idempotency-Key": form.get("request_key") or new_id("console")},
    )
    if not answer.ok:
        errors = {f"points_{k}" if k != "_" else "points": v for k, v in field_errors(answer).items()}
        return await _customer_page(request, api, customer_id, errors=errors, typed=form)
    return redirect(f"/console/customers/{customer_id}?done=points#ledger")


@router.post("/customers/{customer_id}/coupons", response_class=HTMLResponse)
async def give_coupon(customer_id: str, request: Request, api: ApiDep) -> Response:
    """One coupon of a template for this customer (the template's limits apply)."""
    template_id = str((await request.form()).get("template_id", "")).strip()
    if not template_id:
        said = words(request)[0]("Choose a coupon template.")
        return await _customer_page(request, api, customer_id, errors={"coupon": said})
    answer = await api.call(
        "POST", f"/api/v1/coupons/templates/{template_id}/issue", json={"customer_ids": [customer_id]}
    )
    if answer.ok and not answer.body.get("issued"):
        said = words(request)[0]("This customer already holds as many of these coupons as one may.")
        return await _customer_page(request, api, customer_id, errors={"coupon": said})
    if not answer.ok:
        return await _customer_page(request, api, customer_id, errors={"coupon": answer.error})
    return redirect(f"/console/customers/{customer_id}?done=coupon#coupons")


@router.post("/customers/{customer_id}/tags", response_class=HTMLResponse)
async def add_tags(customer_id: str, request: Request, api: ApiDep) -> Response:
    """Tags typed "VIP，爱喝绿茶" (a Chinese comma, a comma or 、 between them)."""
    typed = str((await request.form()).get("tags", ""))
    answer = await api.call("POST", f"/api/v1/customers/{customer_id}/tags", json={"tags": typed_list(typed)})
    if not answer.ok:
        errors = {"tags": "; ".join(field_errors(answer).values())}
        return await _customer_page(request, api, customer_id, errors=errors, typed={"tags": typed})
    return redirect(f"/console/customers/{customer_id}")


@router.post("/customers/{customer_id}/groups", response_class=HTMLResponse)
async def join_group(customer_id: str, request: Request, api: ApiDep) -> Response:
    group_id = str((await request.form()).get("group_id", ""))
    body = {"customer_ids": [customer_id]}
    answer = await api.call("POST", f"/api/v1/groups/{quote(group_id, safe='')}/members", json=body)
    if not answer.ok:
        return await _customer_page(request, api, customer_id, errors={"groups": answer.error})
    return redirect(f"/console/customers/{customer_id}")


@router.post("/customers/{customer_id}/groups/{group_id}/leave", response_class=HTMLResponse)
async def leave_group(customer_id: str, group_id: str, api: ApiDep) -> Response:
    await api.call("DELETE", f"/api/v1/groups/{group_id}/members/{customer_id}")
    return redirect(f"/console/customers/{customer_id}")  # out already (another tab) is as good


@router.post("/customers/{customer_id}/tags/delete", response_class=HTMLResponse)
async def remove_tag(customer_id: str, request: Request, api: ApiDep) -> Response:
    tag = str((await request.form()).get("tag", ""))
    await api.call("DELETE", f"/api/v1/customers/{customer_id}/tags/{quote(tag, safe='')}")
    return redirect(f"/console/customers/{customer_id}")  # gone already (another tab) is as good
