"""Outbound webhooks go to public addresses only (in production): address literals refused when the
subscription is made, names refused before a delivery when they resolve inward."""

from __future__ import annotations

import pytest

from services.messaging import targets
from services.messaging.settings import MessagingSettings


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",
        "http://localhost/hooks",
        "http://api.localhost/hooks",
        "http://10.0.0.5/hooks",
        "http://192.168.1.1/hooks",
        "http://172.16.0.1/hooks",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://0.0.0.0/hooks",
        "http://100.64.0.1/hooks",  # carrier-grade NAT
    ],
)
def test_inward_addresses_are_refused(url: str) -> None:
    with pytest.raises(targets.PrivateTarget):
        targets.check_url(url)


def test_public_addresses_and_names_pass_the_first_check() -> None:
    targets.check_url("https://93.184.216.34/hooks")
    targets.check_url("https://hooks.shop.example/laoke")  # a name: checked again at delivery


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1"])
async def test_a_host_that_resolves_inward_is_refused_at_delivery(host: str) -> None:
    # Not address literals to `ipaddress`, but the resolver reads them as 127.0.0.1: the classic way
    # round a literal-only check. The delivery-time check looks at what the name resolves to.
    targets.check_url(f"http://{host}:9/hooks")
    with pytest.raises(targets.PrivateTarget, match="not a public address"):
        await targets.check_resolved(f"http://{host}:9/hooks")


def test_private_targets_are_allowed_only_outside_production_unless_configured() -> None:
    assert MessagingSettings(environment="development").private_webhooks_allowed
    production = {"environment": "production", "internal_secret": "x" * 40, "admin_token": "y" * 40}
    assert not MessagingSettings(**production).private_webhooks_allowed
    assert MessagingSettings(**production, webhook_allow_private=True).private_webhooks_allowed
