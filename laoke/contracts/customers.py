"""Customer events (`laoke.customers.v1`), emitted by ingest when buyer identity changes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

CUSTOMER_MERGED = "customer.merged"


class CustomerMergedPayload(BaseModel):
    """Two customer ids turned out to be one buyer (the same mobile on two channels).

    Everything of `from_customer_id` now belongs to `into_customer_id`; consumers fold their state
    for `from` into `into`. The event is keyed by `from`, so it follows every earlier event of `from`.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_customer_id: str = Field(alias="from")
    into_customer_id: str = Field(alias="into")
    reason: str = "mobile"
