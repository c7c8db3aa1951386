"""PATCH bodies: a field left out keeps its value; a field that cannot be empty may not be sent as null."""

from __future__ import annotations

from pydantic import BaseModel


def refuse_nulls(patch: BaseModel, *fields: str) -> None:
    """Raise (a 422 from inside a model validator) when one of `fields` was sent as null."""
    nulls = [name for name in fields if name in patch.model_fields_set and getattr(patch, name) is None]
    if nulls:
        raise ValueError(f"{', '.join(nulls)} cannot be null: leave a field out to keep its value")
