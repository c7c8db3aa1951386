"""Money is exact: amounts travel as decimal yuan strings ("128.50") and are stored as integer fen."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, PlainSerializer

Yuan = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2, examples=["128.50"]),
    PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json"),
]


def to_fen(amount: Decimal) -> int:
    return int(amount * 100)


def from_fen(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))
