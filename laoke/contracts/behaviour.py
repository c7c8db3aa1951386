"""Buyer behaviour events (`laoke.behaviour.v1`): favourites, add-to-cart and browsing."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from laoke.contracts.customers import BuyerSnapshot


class BehaviourKind(StrEnum):
    FAVORITE_ITEM = "favorite_item"
    FAVORITE_SHOP = "favorite_shop"
    ADD_TO_CART = "add_to_cart"
    BROWSE = "browse"


class BehaviourPayload(BaseModel):
    """Event type is `behaviour.<kind>`, e.g. `behaviour.add_to_cart`."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    kind: BehaviourKind
    item_id: str | None = None
    item_title: str | None = None
    occurred_at: datetime
    channel: str | None = None
    buyer: BuyerSnapshot | None = None
