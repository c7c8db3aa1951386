"""Customer events (`laoke.customers.v1`), emitted by ingest when buyer identity changes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

CUSTOMER_MERGED = "customer.merged"


class BuyerSnapshot(BaseModel):
    """What the source told us about the buyer with an order or a behaviour event. Segmentation builds
    the profile from it (a field the shop edited by hand is not overwritten). Personal data travels in
    events inside Laoke only; logs mask it."""

    model_config = ConfigDict(extra="ignore")

    external_id: str | None = None
    nick: str | None = None
    email: str | None = None
    mobile: str | None = None
    receiver_name: str | None = None
    province: str | None = None
    city: str | None = None


class CustomerMergedPayload(BaseModel):
    """Two customer ids turned out to be one buyer (the same mobile on two channels).

    Everything of `from_customer_id` now belongs to `into_customer_id`; consumers fold their state
    for `from` into `into`. The event is keyed by `from`, so it follows every earlier event of `from`.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_customer_id: str = Field(alias="from")
    into_customer_id: str = Field(alias="into")
    reason: str = "mobile"
