"""Imports (upload, live progress, error rows), settings (keys, webhook secret, channels, messaging
policy, RFM preset) and the dev inbox of a local stack."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from gateway.console.base import Api, field_errors, redirect, render, whole_number
from gateway.console.session import ApiDep

router = APIRouter(prefix="/console")

SCOPES = ("read", "write", "pii", "keys")
# What a channel's box starts from when the channel is not configured yet (docs/messaging.md).
CHANNEL_EXAMPLES: dict[str, dict[str, Any]] = {
    "sms": {
        "enabled": True,
        "provider": "aliyun",
        "access_key_id": "LTAI…",
        "access_key_secret": "…",
        "sign_name": "西湖茶庄",
        "rate_per_second": 50,
    },
    "email": {"enabled": True, "from_address": "hello@shop.example", "from_name": "西湖茶庄"},
    "inapp": {"enabled": True},
}
PRESETS = ("default", "high_ticket", "fast_moving", "custom")
# The marketplaces an import can be filed under (the import API's `channel`), the format's own first.
SALES_CHANNELS = ("", "taobao", "tmall", "jd", "pinduoduo", "douyin", "shopify", "woocommerce")
# The RFM thresholds as the settings form shows them: each list as "30, 60, 90, 180".
RFM_LISTS = ("recency_days", "frequency", "monetary")
RFM_NUMBERS = ("window_days", "active_days", "sleeping_days")


@router.get("/imports", response_class=HTMLResponse)
async def import_list(request: Request, api: ApiDep) -> Response:
    imports = await api.get("/api/v1/imports", limit=50)
    return render(
        request, "imports.html", imports=imports["items"], error=None, sales_channels=SALES_CHANNELS
    )


@router.post("/imports", response_class=HTMLResponse)
async def upload(
    request: Request,
    api: ApiDep,
    file: Annotated[UploadFile, File()],
    award_points: Annotated[bool, Form()] = False,
    dry_run: Annotated[bool, Form()] = False,
    channel: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """The file goes to the import API as it came (streamed from its temporary file)."""
    choices = {"award_points": "true" if award_points else "false", "dry_run": "true" if dry_run else "false"}
    answer = await api.call(
        "POST",
        "/api/v1/imports",
        files={"file": (file.filename or "upload.csv", file.file, file.content_type or "text/csv")},
        # A Tmall shop's export reads like Taobao's: the channel files its buyers where its webhooks do.
        data=choices | ({"channel": channel} if channel else {}),
    )
    if not answer.ok:
        imports = await api.get("/api/v1/imports", limit=50)
        return render(
            request,
            "imports.html",
            status_code=422,
            imports=imports["items"],
            error=answer.error,
            sales_channels=SALES_CHANNELS,
        )
    return redirect(f"/console/imports/{answer.body['import_id']}")


@router.get("/imports/{import_id}", response_class=HTMLResponse)
async def import_page(import_id: str, request: Request, api: ApiDep) -> Response:
    found = await api.get(f"/api/v1/imports/{import_id}")
    pct = (
        100
        if found["status"] in ("completed", "failed")
        else round(100 * found["bytes_read"] / max(found["size_bytes"], 1))
    )
    fragment = request.headers.get("hx-request") == "true"
    finished = found["status"] in ("completed", "failed")
    return render(
        request,
        "_import_status.html" if fragment else "import.html",
        status_code=286 if fragment and finished else 200,  # htmx stops polling
        i=found,
        pct=pct,
    )


@router.get("/imports/{import_id}/errors.csv")
async def import_errors(import_id: str, api: ApiDep) -> Response:
    upstream = await api.raw(f"/api/v1/imports/{import_id}/errors.csv")
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "text/csv"),
        headers={"Content-Disposition": f'attachment; filename="import-{import_id}-errors.csv"'},
    )


async def _settings_page(
    request: Request, api: Api, rfm_typed: dict[str, str] | None = None, **extra: Any
) -> Response:
    me, keys, channels, policy, rfm, failures = await asyncio.gather(
        api.get("/api/v1/me"),
        api.call("GET", "/api/v1/keys"),
        api.get("/api/v1/messaging/channels"),
        api.get("/api/v1/messaging/policy"),
        api.get("/api/v1/rfm/config"),
        api.get("/api/v1/ingest/webhook-failures", limit=10),
    )
    return render(
        request,
        "settings.html",
        keys=keys.body["items"] if keys.ok else None,
        webhooks={
            # Tmall trades come in Taobao's shape; the query files them (and their buyers) under Tmall.
            m: f"{request.base_url}api/v1/webhooks/{path}/{me['shop_id']}{query}"
            for m, path, query in (
                ("taobao", "taobao", ""),
                ("tmall", "taobao", "?channel=tmall"),
                ("shopify", "shopify", ""),
                ("woocommerce", "woocommerce", ""),
                ("generic", "generic", ""),
            )
        },
        channels=[
            {
                **ch,
                "draft": json.dumps(
                    ch["settings"] if ch["configured"] else CHANNEL_EXAMPLES.get(ch["channel"], {}),
                    ensure_ascii=False,
                    indent=1,
                ),
            }
            for ch in channels["items"]
        ],
        policy=policy,
        rfm=rfm,
        rfm_form=rfm_typed or _rfm_form(rfm),
        webhook_failures=failures["items"],
        scopes=SCOPES,
        presets=PRESETS,
        status_code=422 if extra.get("errors") else 200,
        **({"new_key": None, "secret": None, "errors": {}} | extra),
    )


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, api: ApiDep) -> Response:
    return await _settings_page(request, api)


@router.post("/settings/keys", response_class=HTMLResponse)
async def create_key(request: Request, api: ApiDep) -> Response:
    form = await request.form()
    body = {
        "name": str(form.get("name", "")).strip(),
        "scopes": [s for s in SCOPES if form.get(f"scope_{s}")],
    }
    answer = await api.call("POST", "/api/v1/keys", json=body)
    if not answer.ok:
        return await _settings_page(request, api, errors={"key": answer.error})
    return await _settings_page(request, api, new_key=answer.body["api_key"])


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(key_id: str, api: ApiDep) -> Response:
    await api.call("DELETE", f"/api/v1/keys/{key_id}")
    return redirect("/console/settings")


@router.post("/settings/webhook-secret", response_class=HTMLResponse)
async def rotate_secret(request: Request, api: ApiDep) -> Response:
    answer = await api.call("POST", "/api/v1/webhook-secret/rotate")
    if not answer.ok:
        return await _settings_page(request, api, errors={"secret": answer.error})
    return await _settings_page(request, api, secret=answer.body)


@router.post("/settings/channels/{channel}", response_class=HTMLResponse)
async def save_channel(channel: str, request: Request, api: ApiDep) -> Response:
    draft = str((await request.form()).get("body", ""))
    try:
        body = json.loads(draft)
    except ValueError as exc:
        return await _settings_page(request, api, errors={f"channel_{channel}": f"not valid JSON: {exc}"})
    answer = await api.call("PUT", f"/api/v1/messaging/channels/{channel}", json=body)
    if not answer.ok:
        return await _settings_page(request, api, errors={f"channel_{channel}": answer.error})
    return redirect("/console/settings")


@router.post("/settings/policy", response_class=HTMLResponse)
async def save_policy(request: Request, api: ApiDep) -> Response:
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    policy = await api.get("/api/v1/messaging/policy")
    policy |= {
        "cap_messages": form.get("cap_messages", ""),
        "cap_days": form.get("cap_days", ""),
        "quiet_start": form.get("quiet_start") or None,
        "quiet_end": form.get("quiet_end") or None,
    }
    answer = await api.call("PUT", "/api/v1/messaging/policy", json=policy)
    if not answer.ok:
        return await _settings_page(request, api, errors={"policy": answer.error, **field_errors(answer)})
    return redirect("/console/settings")


def _rfm_form(config: dict[str, Any]) -> dict[str, str]:
    """The configuration as the form's fields."""
    fields = {name: ", ".join(str(v) for v in config[name]) for name in RFM_LISTS}
    return fields | {name: str(config[name]) for name in RFM_NUMBERS} | {"preset": config["preset"]}


def _rfm_body(form: dict[str, str]) -> dict[str, Any]:
    """A preset alone, or (自定义) every threshold as typed: "30，60，90，180" (a Chinese comma, or spaces)
    is a list; what is not a number goes to the API as typed, so its message names the field."""
    preset = form.get("preset") or "default"
    if preset != "custom":
        return {"preset": preset}
    body: dict[str, Any] = {"preset": "custom"}
    for name in RFM_LISTS:
        parts = [p for p in re.split(r"[\s,，、]+", form.get(name, "")) if p]
        body[name] = [p if name == "monetary" else whole_number(p) for p in parts]
    for name in RFM_NUMBERS:
        body[name] = whole_number(form.get(name, ""))
    return body


@router.post("/settings/rfm", response_class=HTMLResponse)
async def save_rfm(request: Request, api: ApiDep) -> Response:
    """A preset, or the shop's own thresholds; refused values are shown next to their fields, as typed."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    answer = await api.call("PUT", "/api/v1/rfm/config", json=_rfm_body(form))
    if not answer.ok:
        typed = {name: form.get(name, "") for name in (*RFM_LISTS, *RFM_NUMBERS, "preset")}
        errors = field_errors(answer)
        if "_" in errors:
            errors["rfm"] = errors.pop("_")
        return await _settings_page(request, api, errors=errors, rfm_typed=typed)
    return redirect("/console/settings#rfm")


@router.get("/inbox", response_class=HTMLResponse)
async def dev_inbox(request: Request, api: ApiDep) -> Response:
    """What the local SMTP server and SMS endpoint received (a development stack only)."""
    base = request.app.state.settings.providers_url
    mail: list[dict[str, Any]] = []
    sms: list[dict[str, Any]] = []
    if base:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            try:
                mail_answer, sms_answer = await asyncio.gather(
                    client.get("/_local/mail"), client.get("/_local/sms")
                )
                mail, sms = mail_answer.json(), sms_answer.json()
            except httpx.HTTPError:
                base = None
    return render(request, "inbox.html", enabled=bool(base), mail=mail[-100:][::-1], sms=sms[-100:][::-1])
