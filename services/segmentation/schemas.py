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
    lifecycle: str | None = Field(
        description="new, active, sleeping (沉睡), churned (流失) or prospect", examples=["active"]
    )
    r_score: int | None = Field(description="Recency 1-5", examples=[5])
    f_score: int | None = Field(description="Frequency 1-5", examples=[3])
    m_score: int | None = Field(description="Monetary 1-5", examples=[4])
    rfm_segment: str | None = Field(description="One of the eight RFM classes", examples=["important_value"])
    rfm_segment_name: str | None = Field(examples=["重要价值"])
    scored_at: datetime | None
    tags: list[str] = Field(default_factory=list, examples=[["VIP", "爱喝绿茶"]])
    p_alive: float | None = Field(default=None, description="Probability the buyer is still a customer")
    expected_purchases_90d: float | None = None
    clv_365d: Yuan | None = Field(default=None, description="Predicted spend over the next 365 days")
