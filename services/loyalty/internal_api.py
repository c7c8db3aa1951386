"""Feeds other services read with the internal credential (not routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from laoke.kit.bulk import csv_feed
from laoke.kit.service import CallerDep

internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)


@internal.get("/expiries/{run}/balances.csv")
async def expiry_balances(
    run: Annotated[str, Path(pattern=r"^\d{8}T\d{6}$")], caller: CallerDep, request: Request
) -> StreamingResponse:
    """The current balance of every member an expiry run touched (`loyalty.points_expired`)."""
    query = (
        "SELECT m.customer_id, m.points_balance AS balance FROM loyalty.members m "
        "WHERE m.shop_id = $1 AND m.customer_id IN ("
        "  SELECT customer_id FROM loyalty.points_ledger"
        "  WHERE shop_id = $1 AND kind = 'expire' AND reference LIKE $2)"
    )
    return csv_feed(request.app.state.db, query, caller.shop_id, f"expire:{run}:%")
