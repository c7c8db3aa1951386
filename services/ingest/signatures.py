"""Webhook signature schemes, each checked on the raw body with a constant-time compare.

- Shopify and WooCommerce: base64(HMAC-SHA256(secret, body)) in `X-Shopify-Hmac-Sha256` /
  `X-WC-Webhook-Signature`.
- Laoke's own scheme (Taobao pushes and generic orders), modelled on Stripe's:
  `X-Laoke-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. Several `v1` may
  be sent while a secret is being rotated; any one matching any valid secret passes. A timestamp more
  than 300 s from now is refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from laoke.kit.errors import Unauthorized

FRESHNESS_SECONDS = 300
LAOKE_SIGNATURE_HEADER = "X-Laoke-Signature"


class SignatureError(Unauthorized):
    pass


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def verify_base64_hmac(body: bytes, given: str | None, secrets: list[str], header: str) -> None:
    if not given:
        raise SignatureError(f"missing {header} header")
    try:
        claimed = base64.b64decode(given.strip(), validate=True)
    except ValueError as exc:
        raise SignatureError(f"{header} is not base64") from exc
    if not any(hmac.compare_digest(_hmac(secret, body), claimed) for secret in secrets):
        raise SignatureError(f"{header} does not match the body")


def sign_laoke(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The header value an integrator sends (also used by our tests and benchmarks)."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_laoke(body: bytes, given: str | None, secrets: list[str], now: float | None = None) -> None:
    if not given:
        raise SignatureError(f"missing {LAOKE_SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in given.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureError(f"{LAOKE_SIGNATURE_HEADER} must read t=<unix seconds>,v1=<hex hmac>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > FRESHNESS_SECONDS:
        raise SignatureError(f"{LAOKE_SIGNATURE_HEADER} timestamp is more than {FRESHNESS_SECONDS} s old")
    message = f"{timestamp}.".encode() + body
    expected = [_hmac(secret, message).hex() for secret in secrets]
    if not any(hmac.compare_digest(e, c) for e in expected for c in candidates):
        raise SignatureError(f"{LAOKE_SIGNATURE_HEADER} does not match the body")
