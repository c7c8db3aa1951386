"""Request and response models of the segmentation API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from laoke.kit.money import Yuan


class CustomerOut(BaseModel):
    customer_id: str = Field(examples=["cus_3f9a0c1e5b7d2a48"])
    orders_count: int = Field(description="Paid orders (refunded in full do not count)", examples=[3])
    total_spent: Yuan = Field(description="Paid minus refunded, in yuan")
    average_order_value: Yuan
    first_order_at: datetime | None
    last_order_at: datetime | None
