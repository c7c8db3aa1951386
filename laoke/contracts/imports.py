"""`import.completed` (on `laoke.orders.v1`): a history import landed.

A history import does not emit one event per order. Consumers answer this one signal by fetching the
import's orders from ingest in bulk (`GET /internal/v1/imports/{id}/orders`, CSV) and recomputing
set-based, so a million imported orders cost one event and one COPY per consumer.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

IMPORT_COMPLETED = "import.completed"


class ImportCompletedPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    import_id: str
    rows_imported: int
    customers_created: int = 0
    placed_from: datetime | None = None
    placed_to: datetime | None = None
    award_points: bool = False
    # Path on ingest that streams the import's orders (relative; the consumer knows ingest's URL).
    orders_path: str


# The columns of the feed at `orders_path`, as PostgreSQL types for a temp table. The feed is
# PostgreSQL's binary COPY format, or CSV with a header row (the response's content type says which).
# `?columns=a,b,…` streams only those, in that order.
IMPORT_FEED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("customer_id", "text"),
    ("channel", "text"),
    ("external_order_id", "text"),
    ("status", "text"),
    ("currency", "text"),
    ("total_fen", "bigint"),
    ("paid_fen", "bigint"),
    ("refunded_fen", "bigint"),
    ("item_count", "integer"),
    ("placed_at", "timestamptz"),
    ("paid_at", "timestamptz"),
    ("completed_at", "timestamptz"),
    ("source_modified_at", "timestamptz"),
    # The buyer as the order names them (for profiles); mobile is normalised or empty.
    ("buyer_nick", "text"),
    ("receiver_name", "text"),
    ("mobile", "text"),
    ("province", "text"),
    ("city", "text"),
)
