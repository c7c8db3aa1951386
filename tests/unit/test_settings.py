from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from services.loyalty.settings import LoyaltySettings


def test_shared_variables_fill_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.internal:5432/laoke")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    settings = LoyaltySettings()
    assert settings.database_url == "postgresql+asyncpg://db.internal:5432/laoke"
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.db_schema == "loyalty"


def test_service_prefix_overrides_the_shared_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared/laoke")
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "postgresql://own/loyalty")
    assert LoyaltySettings().database_url == "postgresql+asyncpg://own/loyalty"


def test_default_secrets_are_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAOKE_ENV", "production")
    with pytest.raises(ValidationError, match="LAOKE_INTERNAL_SECRET"):
        LoyaltySettings()
    monkeypatch.setenv("LAOKE_INTERNAL_SECRET", "x" * 40)
    with pytest.raises(ValidationError, match="LAOKE_ADMIN_TOKEN"):
        GatewaySettings()
    monkeypatch.setenv("LAOKE_ADMIN_TOKEN", "short")
    with pytest.raises(ValidationError, match="LAOKE_ADMIN_TOKEN"):
        GatewaySettings()
    monkeypatch.setenv("LAOKE_ADMIN_TOKEN", "y" * 40)
    assert GatewaySettings().admin_token == "y" * 40
