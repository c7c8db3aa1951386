"""Groups (分组): lists of customers a shop keeps by hand (a call-back list, a VIP circle), made and
renamed here, filled with customer IDs or a segment's members at once, and emptied one by one."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.console.base import Api, PageError, field_errors, redirect, render, typed_list
from gateway.console.session import ApiDep

router = APIRouter(prefix="/console/groups")

MEMBERS_SHOWN = 50  # a page of a group's members, the rest a click away


async def _groups_page(
    request: Request, api: Api, typed: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> Response:
    groups = await api.get("/api/v1/groups")
    return render(
        request,
        "groups.html",
        status_code=422 if errors else 200,
        groups=groups["items"],
        typed=typed or {},
        errors=errors or {},
    )


@router.get("", response_class=HTMLResponse)
async def groups(request: Request, api: ApiDep) -> Response:
    return await _groups_page(request, api)


@router.post("", response_class=HTMLResponse)
async def create_group(request: Request, api: ApiDep) -> Response:
    typed = {name: str(value).strip() for name, value in (await request.form()).items()}
    body = {"name": typed.get("name", ""), "description": typed.get("description") or None}
    answer = await api.call("POST", "/api/v1/groups", json=body)
    if answer.ok:
        return redirect(f"/console/groups/{answer.body['id']}")
    return await _groups_page(request, api, typed, field_errors(answer))


async def _group_page(
    request: Request,
    api: Api,
    group_id: str,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    cursor = request.query_params.get("cursor")
    group, members, segments = await asyncio.gather(
        api.get(f"/api/v1/groups/{group_id}"),
        api.get(f"/api/v1/groups/{group_id}/members", limit=MEMBERS_SHOWN, cursor=cursor),
        api.get("/api/v1/segments"),
    )
    return render(
        request,
        "group.html",
        status_code=422 if errors else 200,
        group=group,
        members=members["items"],
        next_page="?" + urlencode({"cursor": members["next_cursor"]}) if members["next_cursor"] else None,
        segments=segments["items"],
        typed=typed or {},
        errors=errors or {},
        added=request.query_params.get("added"),
        error=request.query_params.get("error"),
    )


@router.get("/{group_id}", response_class=HTMLResponse)
async def group(group_id: str, request: Request, api: ApiDep) -> Response:
    return await _group_page(request, api, group_id)


@router.post("/{group_id}", response_class=HTMLResponse)
async def rename_group(group_id: str, request: Request, api: ApiDep) -> Response:
    typed = {name: str(value).strip() for name, value in (await request.form()).items()}
    body = {"name": typed.get("name", ""), "description": typed.get("description") or None}
    answer = await api.call("PATCH", f"/api/v1/groups/{group_id}", json=body)
    if answer.ok:
        return redirect(f"/console/groups/{group_id}")
    return await _group_page(request, api, group_id, typed, field_errors(answer))


@router.post("/{group_id}/members", response_class=HTMLResponse)
async def add_members(group_id: str, request: Request, api: ApiDep) -> Response:
    """Customer IDs pasted (a line, a comma or 、 between them), or a segment's members copied."""
    typed = {name: str(value).strip() for name, value in (await request.form()).items()}
    ids = [part for line in typed.get("customer_ids", "").splitlines() for part in typed_list(line)]
    body = {"segment_id": typed["segment_id"]} if typed.get("segment_id") else {"customer_ids": ids or None}
    answer = await api.call("POST", f"/api/v1/groups/{group_id}/members", json=body)
    if answer.ok:
        return redirect(f"/console/groups/{group_id}?{urlencode({'added': answer.body['added']})}")
    return await _group_page(request, api, group_id, typed, {"members": answer.error})


@router.post("/{group_id}/members/{customer_id}/remove")
async def remove_member(group_id: str, customer_id: str, api: ApiDep) -> Response:
    answer = await api.call("DELETE", f"/api/v1/groups/{group_id}/members/{customer_id}")
    if not answer.ok and answer.status != 404:  # already gone (another tab): the page shows the list as it is
        raise PageError(answer)
    return redirect(f"/console/groups/{group_id}")


@router.post("/{group_id}/delete")
async def delete_group(group_id: str, api: ApiDep) -> Response:
    answer = await api.call("DELETE", f"/api/v1/groups/{group_id}")
    if answer.status == 409:  # a segment's rule names it: said on its page
        return redirect(f"/console/groups/{group_id}?{urlencode({'error': answer.error})}")
    if not answer.ok and answer.status != 404:
        raise PageError(answer)
    return redirect("/console/groups")
