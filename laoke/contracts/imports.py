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
