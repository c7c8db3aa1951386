"""Signature schemes of third-party vendors, shared by our clients and the local stand-ins of those
vendors (laoke/devstack/providers.py). Each is checked against the vendor's published example
(tests/unit/kit/test_vendors.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
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
