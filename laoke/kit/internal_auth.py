"""The internal credential: proof that a request to a service came through the gateway.

The gateway signs what it vouches for (method, path, shop, scopes, key, request id, time) with the
shared `LAOKE_INTERNAL_SECRET`; a service recomputes the HMAC and refuses anything unsigned, altered,
or older than the freshness window. A signature, rather than a bare shared token, means a leaked
request cannot be replayed for another shop, another path or an hour later.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from laoke.kit.context import (
    KEY_HEADER,
    REQUEST_ID_HEADER,
    SCOPES_HEADER,
    SHOP_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_SECRETS_HEADER,
)

FRESHNESS_SECONDS = 300


def _message(
    ts: int,
    method: str,
    path: str,
    shop_id: str,
    scopes: str,
    key_id: str,
    request_id: str,
    webhook_secrets: str,
) -> bytes:
    fields = (str(ts), method.upper(), path, shop_id, scopes, key_id, request_id, webhook_secrets)
    return "\n".join(fields).encode()


def sign(
    secret: str,
    *,
    method: str,
    path: str,
    shop_id: str = "",
    scopes: str = "",
    key_id: str = "",
    request_id: str = "",
    webhook_secrets: str = "",
    now: float | None = None,
) -> dict[str, str]:
    """Headers that carry the caller's identity and their signature."""
    ts = int(now if now is not None else time.time())
    message = _message(ts, method, path, shop_id, scopes, key_id, request_id, webhook_secrets)
    headers = {
        SHOP_HEADER: shop_id,
        SCOPES_HEADER: scopes,
        KEY_HEADER: key_id,
        REQUEST_ID_HEADER: request_id,
        SIGNATURE_HEADER: f"t={ts},v1={hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()}",
    }
    if webhook_secrets:
        headers[WEBHOOK_SECRETS_HEADER] = webhook_secrets
    return headers


def verify(secret: str, method: str, path: str, headers: Mapping[str, str], now: float | None = None) -> bool:
    raw = headers.get(SIGNATURE_HEADER, "")
    try:
        parts = dict(item.split("=", 1) for item in raw.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > FRESHNESS_SECONDS:
        return False
    expected = hmac.new(
        secret.encode(),
        _message(
            ts,
            method,
            path,
            headers.get(SHOP_HEADER, ""),
            headers.get(SCOPES_HEADER, ""),
            headers.get(KEY_HEADER, ""),
            headers.get(REQUEST_ID_HEADER, ""),
            headers.get(WEBHOOK_SECRETS_HEADER, ""),
        ),
        hashlib.sha256,
    ).hexdigest()
    return hmac.compare_digest(expected, given)
