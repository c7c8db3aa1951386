"""Campaigns (from a segment, with template preview and per-tier variants, launch / pause, live
progress, results with lift over the holdout) and automation switches."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.console.base import (
    Api,
    field_errors,
    language,
    optional_number,
    redirect,
    render,
    shop_time,
    shop_zone,
    words,
)
from gateway.console.i18n import api_message
from gateway.console.session import ApiDep

router = APIRouter(prefix="/console")

CHANNELS = ("inapp", "sms", "email")
ACTIONS = ("launch", "pause", "resume", "cancel")


def progress(campaign: dict[str, Any]) -> int:
    """Percent of the audience settled: sent, failed, suppressed or cancelled."""
    total = campaign["targeted"] - campaign["holdout"]
    if campaign["status"] == "completed":
        return 100
    if total <= 0:
        return 0
    settled = campaign["sent"] + campaign["failed"] + campaign["suppressed"] + campaign["cancelled"]
    return min(100, round(100 * settled / total))


async def _new_page(
    request: Request, api: Api, form: dict[str, Any], errors: dict[str, str], editing: str | None = None
) -> Response:
    """The campaign form: a new campaign, or (`editing`) one whose audience is not taken yet."""
    segments, templates, coupons, program = await asyncio.gather(
        api.get("/api/v1/segments"),
        api.get("/api/v1/templates"),
        api.get("/api/v1/coupons/templates"),
        api.get("/api/v1/loyalty/program"),
    )
    return render(
        request,
        "campaign_new.html",
        status_code=422 if errors else 200,
        form=form,
        errors=errors,
        segments=segments["items"],
        templates=templates["items"],
        coupons=coupons["items"],
        tiers=[t["name"] for t in program["tiers"]],
        channels=CHANNELS,
        editing=editing,
    )


@router.get("/campaigns", response_class=HTMLResponse)
async def campaign_list(request: Request, api: ApiDep) -> Response:
    return await _campaigns_page(request, api)


async def _campaigns_page(
    request: Request, api: Api, errors: dict[str, str] | None = None, typed: dict[str, str] | None = None
) -> Response:
    """The campaigns, and the message templates (corrected or deleted here; errors by the template)."""
    cursor = request.query_params.get("cursor")
    campaigns, templates = await asyncio.gather(
        api.get("/api/v1/campaigns", limit=50, cursor=cursor), api.get("/api/v1/templates")
    )
    return render(
        request,
        "campaigns.html",
        status_code=422 if errors else 200,
        campaigns=campaigns["items"],
        next_page="?" + urlencode({"cursor": campaigns["next_cursor"]}) if campaigns["next_cursor"] else None,
        templates=templates["items"],
        errors=errors or {},
        typed=typed or {},
        progress=progress,
    )


@router.get("/campaigns/new", response_class=HTMLResponse)
async def new_campaign(request: Request, api: ApiDep) -> Response:
    form = {
        "segment_id": request.query_params.get("segment_id", ""),
        "channel": "inapp",
        "holdout_percent": "10",
    }
    return await _new_page(request, api, form, {})


def _campaign_body(request: Request, form: dict[str, str]) -> dict[str, Any]:
    variants = {k.removeprefix("variant_"): v for k, v in form.items() if k.startswith("variant_") and v}
    return {
        "name": form.get("name", ""),
        "segment_id": form.get("segment_id", ""),
        "channel": form.get("channel", ""),
        "template_id": form.get("template_id") or None,
        "variants_by_tier": variants or None,
        "coupon_template_id": form.get("coupon_template_id") or None,
        "holdout_percent": form.get("holdout_percent") or 0,
        "schedule_at": shop_time(form.get("schedule_at", ""), shop_zone(request)),
    }


@router.post("/campaigns", response_class=HTMLResponse)
async def create_campaign(request: Request, api: ApiDep) -> Response:
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    answer = await api.call("POST", "/api/v1/campaigns", json=_campaign_body(request, form))
    if not answer.ok:
        return await _new_page(request, api, form, field_errors(answer))
    return redirect(f"/console/campaigns/{answer.body['id']}")


@router.get("/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
async def edit_campaign(campaign_id: str, request: Request, api: ApiDep) -> Response:
    """The campaign form filled in with a draft or scheduled campaign (its send time on the shop's clock)."""
    c = await api.get(f"/api/v1/campaigns/{campaign_id}")
    schedule_at = c["schedule_at"] and datetime.fromisoformat(c["schedule_at"]).astimezone(shop_zone(request))
    form = {
        "name": c["name"],
        "segment_id": c["segment_id"],
        "channel": c["channel"],
        "template_id": c["template_id"] or "",
        "coupon_template_id": c["coupon_template_id"] or "",
        "holdout_percent": str(c["holdout_percent"]),
        "schedule_at": schedule_at.strftime("%Y-%m-%dT%H:%M") if schedule_at else "",
        **{f"variant_{tier}": template for tier, template in (c["variants_by_tier"] or {}).items()},
    }
    return await _new_page(request, api, form, {}, editing=campaign_id)


@router.post("/campaigns/{campaign_id}/edit", response_class=HTMLResponse)
async def save_campaign(campaign_id: str, request: Request, api: ApiDep) -> Response:
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    answer = await api.call("PATCH", f"/api/v1/campaigns/{campaign_id}", json=_campaign_body(request, form))
    if not answer.ok:
        return await _new_page(request, api, form, field_errors(answer), editing=campaign_id)
    return redirect(f"/console/campaigns/{campaign_id}")


@router.post("/templates", response_class=HTMLResponse)
async def create_template(request: Request, api: ApiDep) -> Response:
    """A template made from the campaign form, which comes back with it chosen."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    body = _template_body(form, "template_")
    answer = await api.call("POST", "/api/v1/templates", json=body)
    page = {**form, "channel": body["channel"]}
    if not answer.ok:
        # What names no field (an e-mail template without a subject) goes above the template's form.
        errors = {f"template_{k}" if k != "_" else "template": v for k, v in field_errors(answer).items()}
        return await _new_page(request, api, page, errors)
    return await _new_page(request, api, {**page, "template_id": answer.body["id"]}, {})


def _template_body(form: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """A template as its form has it: the e-mail subject, and the code the SMS vendor approved the text
    under (阿里云/腾讯云 短信模板 CODE; without it the vendor refuses the message), only when given."""
    body: dict[str, Any] = {
        "name": form.get(f"{prefix}name", ""),
        "channel": form.get(f"{prefix}channel", ""),
        "body": form.get(f"{prefix}body", ""),
    }
    for optional in ("subject", "provider_template_code"):
        if form.get(f"{prefix}{optional}"):
            body[optional] = form[f"{prefix}{optional}"]
    return body


@router.post("/templates/{template_id}", response_class=HTMLResponse)
async def save_template(template_id: str, request: Request, api: ApiDep) -> Response:
    """A template corrected (messages already sent keep their text)."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    answer = await api.call("PUT", f"/api/v1/templates/{template_id}", json=_template_body(form))
    if not answer.ok:
        return await _campaigns_page(request, api, {template_id: answer.error}, form)
    return redirect("/console/campaigns#templates")


@router.post("/templates/{template_id}/delete", response_class=HTMLResponse)
async def delete_template(template_id: str, request: Request, api: ApiDep) -> Response:
    answer = await api.call("DELETE", f"/api/v1/templates/{template_id}")
    if not answer.ok and answer.status != 404:  # gone already (another tab): nothing to say
        return await _campaigns_page(request, api, {template_id: answer.error})
    return redirect("/console/campaigns#templates")


@router.get("/templates/{template_id}/preview", response_class=HTMLResponse)
async def template_preview(template_id: str, request: Request, api: ApiDep) -> Response:
    template = await api.get(f"/api/v1/templates/{template_id}")
    answer = await api.call(
        "POST",
        "/api/v1/templates/preview",
        json={"channel": template["channel"], "subject": template.get("subject"), "body": template["body"]},
    )
    return render(
        request,
        "_template_preview.html",
        preview=answer.body if answer.ok else None,
        error=None if answer.ok else answer.error,
    )


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign_page(campaign_id: str, request: Request, api: ApiDep) -> Response:
    campaign = await api.get(f"/api/v1/campaigns/{campaign_id}")
    fragment = request.headers.get("hx-request") == "true"
    t, _ = words(request)
    funnel = {
        "type": "bar",
        "labels": [t("Targeted"), t("Sent"), t("Delivered"), t("Converted")],
        "series": [
            {
                "label": campaign["name"],
                "data": [
                    campaign["targeted"],
                    campaign["sent"],
                    campaign["delivered"],
                    campaign["converted"],
                ],
            }
        ],
    }
    attribution = campaign["attribution"]
    rates = {
        "type": "bar",
        "labels": [t("This campaign"), t("Holdout")],
        "series": [
            {
                "label": t("Conversion rate %"),
                "data": [
                    round(100 * (attribution["conversion_rate"] or 0), 2),
                    round(100 * (attribution["holdout_conversion_rate"] or 0), 2),
                ],
            }
        ],
    }
    # 286 tells htmx to stop polling: a finished campaign changes no more.
    finished = campaign["status"] in ("completed", "cancelled", "failed", "draft", "paused")
    return render(
        request,
        "_campaign_status.html" if fragment else "campaign.html",
        status_code=286 if fragment and finished else 200,
        c=campaign,
        failure=api_message(campaign["failure_reason"], language(request))
        if campaign.get("failure_reason")
        else None,
        pct=progress(campaign),
        funnel=funnel,
        rates=rates,
        actions=ACTIONS,
    )


@router.post("/campaigns/{campaign_id}/{action}")
async def campaign_action(campaign_id: str, action: str, request: Request, api: ApiDep) -> Response:
    if action in ACTIONS:
        await api.call("POST", f"/api/v1/campaigns/{campaign_id}/{action}")
    return redirect(f"/console/campaigns/{campaign_id}")


@router.get("/automations", response_class=HTMLResponse)
async def automation_list(request: Request, api: ApiDep) -> Response:
    automations, templates, coupons = await asyncio.gather(
        api.get("/api/v1/automations"), api.get("/api/v1/templates"), api.get("/api/v1/coupons/templates")
    )
    return render(
        request,
        "automations.html",
        automations=automations["items"],
        templates=templates["items"],
        coupons=coupons["items"],
        error=request.query_params.get("error"),
    )


@router.post("/automations/{kind}")
async def save_automation(kind: str, request: Request, api: ApiDep) -> Response:
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    if not form.get("template_id"):
        t, v = words(request)
        error = f"{v('automation', kind)}: {t('Choose a template first.')}"
        return redirect(f"/console/automations?error={quote(error)}")
    body = {
        "enabled": form.get("enabled") == "on",
        "channel": form.get("channel", ""),
        "template_id": form.get("template_id", ""),
        # Empty: the kind's default delay; anything but a whole number goes as typed, to be refused.
        "delay_minutes": optional_number(form.get("delay_minutes", "")),
        # The whole automation is replaced: the coupon is sent as the page shows it, or it would be lost.
        "coupon_template_id": form.get("coupon_template_id") or None,
    }
    answer = await api.call("PUT", f"/api/v1/automations/{kind}", json=body)
    if not answer.ok:
        return redirect(f"/console/automations?error={quote(kind + ': ' + answer.error)}")
    return redirect("/console/automations")
