"""Per-request / per-event context: who is calling and which ids tie the work together.

The gateway authenticates the caller and forwards the shop, scopes and ids in signed headers
(`laoke.kit.internal_auth`); services read them into a `Caller`. Correlation ids flow from HTTP into
the events a request emits and from a consumed event into the events its handler emits.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"
SHOP_HEADER = "x-laoke-shop-id"
SCOPES_HEADER = "x-laoke-scopes"
KEY_HEADER = "x-laoke-key-id"
SIGNATURE_HEADER = "x-laoke-internal-signature"
# Set by the gateway on marketplace webhooks only: the shop's current and still-valid previous secrets.
WEBHOOK_SECRETS_HEADER = "x-laoke-webhook-secrets"

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)


@dataclass(frozen=True, slots=True)
class Caller:
    shop_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_id: str | None = None
    request_id: str | None = None

    def can(self, scope: str) -> bool:
        return scope in self.scopes


def current_correlation_id() -> str | None:
    return correlation_id_var.get()
