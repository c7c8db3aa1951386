"""Event contracts shared by every service: the envelope, topic names and payload models."""

from laoke.contracts.envelope import EventEnvelope, event_key
from laoke.contracts.topics import ALL_TOPICS, Topic, dlq_topic

__all__ = ["ALL_TOPICS", "EventEnvelope", "Topic", "dlq_topic", "event_key"]
