"""Public ids: a short type prefix and 16 random hex digits (`cus_3f9a0c1e5b7d2a48`), readable in logs
and support tickets, unguessable across shops."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"
