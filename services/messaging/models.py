"""Tables of the messaging schema. So far only the shared plumbing (outbox, processed events);
channels, consent and campaigns arrive with the messaging issue."""

from __future__ import annotations

from laoke.kit.db import declarative_base_for
from laoke.kit.outbox import plumbing_tables

SCHEMA = "messaging"
Base = declarative_base_for(SCHEMA)
plumbing = plumbing_tables(Base.metadata)
