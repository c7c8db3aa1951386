"""Alembic environment of this component: its own schema and version table (laoke.kit.migrations)."""

from laoke.kit.migrations import run_env
from services.segmentation.models import SCHEMA, Base

run_env(Base.metadata, SCHEMA)
