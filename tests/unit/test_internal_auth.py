from __future__ import annotations

from laoke.kit.internal_auth import FRESHNESS_SECONDS, sign, verify


def signed(**overrides: str) -> dict[str, str]:
    return sign(
        "s3cret",
        method="POST",
        path="/api/v1/orders",
        shop_id="shp_a",
        scopes="read,write",
        now=1_000,
        **overrides,
    )


def test_valid_signature_verifies() -> None:
    assert verify("s3cret", "POST", "/api/v1/orders", signed(), now=1_000)


def test_any_change_breaks_the_signature() -> None:
    headers = signed()
    assert not verify("other", "POST", "/api/v1/orders", headers, now=1_000)
    assert not verify("s3cret", "GET", "/api/v1/orders", headers, now=1_000)
    assert not verify("s3cret", "POST", "/api/v1/orders/x", headers, now=1_000)
    assert not verify("s3cret", "POST", "/api/v1/orders", {**headers, "x-laoke-shop-id": "shp_b"}, now=1_000)
    assert not verify(
        "s3cret", "POST", "/api/v1/orders", {**headers, "x-laoke-scopes": "read,write,pii"}, now=1_000
    )


def test_old_or_missing_signatures_are_refused() -> None:
    assert not verify("s3cret", "POST", "/api/v1/orders", signed(), now=1_000 + FRESHNESS_SECONDS + 1)
    assert not verify("s3cret", "POST", "/api/v1/orders", {}, now=1_000)
    assert not verify(
        "s3cret", "POST", "/api/v1/orders", {"x-laoke-internal-signature": "garbage"}, now=1_000
    )
