"""Signing in and out, and the language switch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from gateway.console.base import (
    CURRENCY_COOKIE,
    DEFAULT_ZONE,
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    ZONE_COOKIE,
    Api,
    SignedOut,
    api_key_of,
    redirect,
    render,
    session_value,
)
from gateway.console.i18n import LANGUAGES

router = APIRouter(prefix="/console")


async def _api(request: Request) -> AsyncIterator[Api]:
    key = api_key_of(request)
    if key is None:
        raise SignedOut
    api = Api(request, key)
    try:
        yield api
    finally:
        await api.close()


ApiDep = Annotated[Api, Depends(_api)]


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return render(request, "login.html", error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, api_key: Annotated[str, Form(max_length=200)] = "") -> Response:
    api = Api(request, api_key.strip())
    try:
        me = await api.call("GET", "/api/v1/me")
    except SignedOut:
        me = None
    finally:
        await api.close()
    if me is None or not me.ok:
        return render(request, "login.html", status_code=401, error="That key was not accepted.")
    response = redirect("/console")
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        session_value(request.app.state.settings.internal_secret, api_key.strip()),
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=7 * 24 * 3600,
        path="/console",
    )
    zone = str(me.body.get("timezone") or DEFAULT_ZONE) if isinstance(me.body, dict) else DEFAULT_ZONE
    response.set_cookie(ZONE_COOKIE, zone, samesite="strict", max_age=7 * 24 * 3600, path="/console")
    currency = str(me.body.get("currency") or "CNY") if isinstance(me.body, dict) else "CNY"
    response.set_cookie(CURRENCY_COOKIE, currency, samesite="strict", max_age=7 * 24 * 3600, path="/console")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    response.delete_cookie(ZONE_COOKIE, path="/console")
    response.delete_cookie(CURRENCY_COOKIE, path="/console")
    return response


@router.get("/lang/{lang}")
async def switch_language(lang: str, request: Request) -> Response:
    back = request.headers.get("referer") or "/console"
    response = redirect(back if back.startswith(str(request.base_url)) else "/console")
    if lang in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, lang, samesite="lax", max_age=365 * 24 * 3600, path="/console")
    return response
