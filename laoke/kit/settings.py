"""Settings base for every process.

Each service subclasses `ServiceSettings` with its own env prefix (`LOYALTY_`, `INGEST_`, ...). The two
connection settings ops change most, `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS`, are read unprefixed
as well, so one pair of variables points the whole stack at real servers while a prefixed variable
(`LOYALTY_DATABASE_URL`) can still give one service its own database.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:54329/laoke"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEV_INTERNAL_SECRET = "dev-internal-secret-not-for-production"  # noqa: S105 - refused outside development

# Unprefixed variables shared by the whole stack, and the field each one fills when the
# service-prefixed variable is not set.
_SHARED_ENV = {
    "database_url": "DATABASE_URL",
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "internal_secret": "LAOKE_INTERNAL_SECRET",
    "environment": "LAOKE_ENV",
    "kafka_idempotence": "LAOKE_KAFKA_IDEMPOTENCE",
    "log_level": "LAOKE_LOG_LEVEL",
    "topic_partitions": "LAOKE_TOPIC_PARTITIONS",
    "topic_replication_factor": "LAOKE_TOPIC_REPLICATION_FACTOR",
    "consumer_fetch_max_wait_ms": "LAOKE_CONSUMER_FETCH_MAX_WAIT_MS",
    "consumer_fetch_idle_wait_ms": "LAOKE_CONSUMER_FETCH_IDLE_WAIT_MS",
    "relay_verify_topics": "LAOKE_RELAY_VERIFY_TOPICS",
    "ingest_url": "LAOKE_INGEST_URL",
    "segmentation_url": "LAOKE_SEGMENTATION_URL",
    "loyalty_url": "LAOKE_LOYALTY_URL",
}


def normalise_database_url(url: str) -> str:
    """Accept the plain `postgresql://` form ops paste and use the asyncpg driver for it."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "laoke"
    environment: Literal["development", "test", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = Field(default=20, ge=1)
    kafka_bootstrap_servers: str = DEFAULT_KAFKA_BOOTSTRAP
    # Tansu (the embedded broker) has no InitProducerId; real Kafka should run with this on.
    kafka_idempotence: bool = False
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    internal_secret: str = DEV_INTERNAL_SECRET
    log_level: str = "INFO"
    # Which loops this process runs: ops split HTTP replicas from workers by turning these off.
    run_consumers: bool = True
    run_relay: bool = True
    consumer_max_attempts: int = Field(default=5, ge=1)
    # How long a fetch may wait on the broker for new records. Kafka answers as soon as data arrives,
    # so this mostly bounds idle polling; the embedded broker holds the fetch for the full wait, so a
    # long wait there is added straight onto event latency.
    consumer_fetch_max_wait_ms: int = Field(default=500, ge=1)
    # The wait once a consumer has seen no record for a few seconds (unset: always the one above). On
    # the embedded broker each fetch costs it work for every partition asked about, so a stack polling
    # every 10 ms burns most of a core doing nothing; idle, it polls less often, and the first event
    # after a lull waits up to this long.
    consumer_fetch_idle_wait_ms: int | None = Field(default=None, ge=1)
    # Before each relay batch, check the broker still has our topics (see OutboxRelay._check_topics).
    # Essential on a broker that can forget topics; on a Kafka cluster with auto-creation off it only
    # adds a metadata request per batch, and ops may turn it off.
    relay_verify_topics: bool = True
    relay_linger_ms: float = Field(default=3.0, ge=0, description="Wait after a wake-up to batch events")
    # Where other services fetch bulk feeds from ingest (history imports); LAOKE_INGEST_URL.
    ingest_url: str = "http://127.0.0.1:8001"
    # Where loyalty resolves segments into customers (coupon issue); LAOKE_SEGMENTATION_URL.
    segmentation_url: str = "http://127.0.0.1:8002"
    # Where segmentation reads balances after a points expiry run; LAOKE_LOYALTY_URL.
    loyalty_url: str = "http://127.0.0.1:8003"

    @model_validator(mode="before")
    @classmethod
    def _fill_from_shared_env(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for field, var in _SHARED_ENV.items():
                if field not in data and var in os.environ:
                    data[field] = os.environ[var]
        return data

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        object.__setattr__(self, "database_url", normalise_database_url(self.database_url))
        if self.environment == "production" and self.internal_secret == DEV_INTERNAL_SECRET:
            raise ValueError("LAOKE_INTERNAL_SECRET must be set to a real secret outside development")
        return self

    @property
    def db_schema(self) -> str:
        """Each service owns exactly one PostgreSQL schema, named after it."""
        return self.service_name
