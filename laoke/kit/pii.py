"""Masking of personal data (phone, e-mail, name) for logs and for views without the `pii` scope."""

from __future__ import annotations

import re

_NOT_DIGIT = re.compile(r"\D")


def mask_phone(value: str | None) -> str | None:
    if value is None:
        return None
    digits = _NOT_DIGIT.sub("", value)
    if len(digits) < 7:
        return "***"
    return f"{digits[:3]}****{digits[-4:]}"


def mask_email(value: str | None) -> str | None:
    if value is None:
        return None
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_name(value: str | None) -> str | None:
    """李雷 → 李*, Anna Smith → A***: enough for a shop assistant to recognise, not to identify."""
    if not value:
        return value
    return value[0] + ("*" if len(value) <= 3 else "***")
