"""Settings of the ingest service: env prefix `INGEST_`, plus the stack-wide variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", frozen=True)

    service_name: str = "ingest"
    # Uploaded history files wait here while they are imported, then are deleted. Every ingest API
    # replica needs its own writable folder; nothing is shared between replicas.
    import_dir: Path = Path(".laoke/imports")
    import_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    imports_at_once: int = Field(default=1, ge=1, description="Concurrent imports per replica")
    # PostgreSQL's `temp_buffers` on an import's own connection: a million staged rows take ~300 MB,
    # and with the default 8 MB every page of them went through the kernel on each pass (the landing
    # of a million rows 10 % slower). Taken only as the import fills it; the connection closes after.
    import_temp_buffers_mib: int = Field(default=1024, ge=1)
