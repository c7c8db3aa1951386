"""Topic names: `laoke.<domain>.v<N>`. Every topic has a dead-letter twin `<topic>.dlq`."""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    ORDERS = "laoke.orders.v1"
    CUSTOMERS = "laoke.customers.v1"
    BEHAVIOUR = "laoke.behaviour.v1"
    LOYALTY = "laoke.loyalty.v1"
    SEGMENTATION = "laoke.segmentation.v1"
    MESSAGING = "laoke.messaging.v1"
    SHOPS = "laoke.shops.v1"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


ALL_TOPICS: tuple[str, ...] = tuple(t.value for t in Topic) + tuple(dlq_topic(t.value) for t in Topic)
