"""Signature schemes of third-party vendors, shared by our clients and the local stand-ins of those
vendors (laoke/devstack/providers.py). Each is checked against the vendor's published example
(tests/unit/kit/test_vendors.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote


def _percent(value: str) -> str:
    # RFC 3986 unreserved characters stay; space is %20, not '+' (Aliyun's POP signature rules).
    return quote(value, safe="~")


def aliyun_signature(method: str, params: dict[str, str], secret: str) -> str:
    """Aliyun RPC (POP) signature version 1.0, HMAC-SHA1, over every parameter but `Signature`."""
    canonical = "&".join(f"{_percent(k)}={_percent(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method.upper()}&{_percent('/')}&{_percent(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def tencent_tc3_authorization(
    *, secret_id: str, secret_key: str, service: str, host: str, body: str, timestamp: int
) -> str:
    """Tencent Cloud API 3.0 `TC3-HMAC-SHA256` for a JSON POST to "/" signing `content-type` and `host`
    (the SigV4 scheme with Tencent's prefix, a `YYYY-MM-DD` date and `tc3_request`)."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:application/json; charset=utf-8\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(body.encode()).hexdigest(),
        ]
    )
    scope = f"{day}/{service}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"

    def _hmac(key: bytes, message: str) -> bytes:
        return hmac.new(key, message.encode(), hashlib.sha256).digest()

    signing = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), day), service), "tc3_request")
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, "
        f"Signature={signature}"
    )
