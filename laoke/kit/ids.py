"""Public ids and pagination cursors.

Ids carry a short type prefix and 16 random hex digits (`cus_3f9a0c1e5b7d2a48`): readable in logs and
support tickets, unguessable across shops. Shop ids have the same shape with the creation second in
their first 8 digits (`new_time_ordered_id`); nothing relies on a shop id being secret (webhooks are
signed, API keys are the credential)."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from laoke.kit import clock
from laoke.kit.errors import BadRequest


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def new_time_ordered_id(prefix: str) -> str:
    """An id of the same shape whose first 8 hex digits are the second it was made, the rest random:
    ids made later sort after earlier ones.

    For shops. Every table is keyed by shop first, and a new shop's first job is usually its history
    import: a million orders into each service's tables at once. With the newest shop's keys last, they
    go in at the right edge of every index, where PostgreSQL splits a full page by the fill factor;
    in the middle of an index (before another shop's keys) it splits each page in half and never
    fills the left half again, for keys wider than two integers: twice the pages, and a million-row
    insert 20-40 % dearer (docs/architecture.md, "Performance habits")."""
    return f"{prefix}_{int(clock.now().timestamp()):08x}{secrets.token_hex(4)}"


def encode_cursor(*parts: str) -> str:
    """An opaque pagination cursor: the sort key of the last item seen."""
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str] | None:
    """The parts of a cursor, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    parts = raw.split("\x1f")
    return parts if len(parts) == size else None


def time_cursor(at: datetime, key: str) -> str:
    """A cursor for a list ordered by (time, id), newest or oldest first."""
    return encode_cursor(at.isoformat(), key)


def read_time_cursor(cursor: str) -> tuple[datetime, str]:
    """The (time, id) a `time_cursor` holds; 400 when the text is not one this API gave out."""
    parts = decode_cursor(cursor, 2)
    try:
        at = datetime.fromisoformat(parts[0]) if parts else None
    except ValueError:
        at = None
    if parts is None or at is None or at.tzinfo is None:  # ours always carry their offset
        raise BadRequest("invalid cursor; pass next_cursor from the previous page unchanged")
    return at, parts[1]
