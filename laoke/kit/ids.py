"""Public ids and pagination cursors.

Ids carry a short type prefix and 16 random hex digits (`cus_3f9a0c1e5b7d2a48`): readable in logs and
support tickets, unguessable across shops."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


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
