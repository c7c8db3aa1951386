"""Asking segmentation about a segment from another service (messaging's campaigns, loyalty's
activities): the one door, so both refuse an unknown segment, and a segmentation that is down, alike."""

from __future__ import annotations

import httpx

from laoke.kit.errors import ServiceUnavailable, Unprocessable
from laoke.kit.internal_auth import sign
from laoke.kit.settings import ServiceSettings


async def segment_size(
    settings: ServiceSettings, shop_id: str, segment_id: str, field: str = "segment_id"
) -> int:
    """The segment's size now; 422 for a segment the shop does not have (another shop's included), naming
    the request's `field` that holds it as a validation error does; 503 when segmentation cannot say
    (nothing is decided on a guess)."""
    path = f"/api/v1/segments/{segment_id}"
    headers = sign(settings.internal_secret, method="GET", path=path, shop_id=shop_id)
    try:
        async with httpx.AsyncClient(base_url=settings.segmentation_url, timeout=10) as client:
            response = await client.get(path, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"could not check segment {segment_id}: {type(exc).__name__}") from exc
    if response.status_code == 404:
        raise Unprocessable(f"{field}: segment {segment_id} not found")
    if response.status_code != 200:
        raise ServiceUnavailable(f"segmentation answered {response.status_code} for segment {segment_id}")
    return int(response.json()["size"])
