"""Alembic environment of this component: its own schema and version table (laoke.kit.migrations)."""

from gateway.models import SCHEMA, Base
from laoke.kit.migrations import run_env

run_env(Base.metadata, SCHEMA)
