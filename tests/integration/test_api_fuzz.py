"""API fuzzing: Schemathesis generates requests from the gateway's OpenAPI document, valid and invalid,
and sends them with a shop's key. No answer may be a 5xx, and every answer must match the schema the
document gives for it.

Marketplace webhooks and the admin routes are left out: they are not authenticated by an API key,
and their signature schemes have tests of their own. The examples per operation are kept small so the
suite stays quick; `LAOKE_FUZZ_EXAMPLES` raises them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet, extra_gateway

EXAMPLES = os.environ.get("LAOKE_FUZZ_EXAMPLES", "8")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def test_no_operation_answers_5xx_or_breaks_its_schema(stack: ServerSet, shop: ShopClient) -> None:
    # The servers share this test's event loop, so the fuzzer runs as its own process, awaited; through a
    # gateway whose rate limit lets a fuzzer's pace through.
    # A key without the `keys` scope: the fuzzer finds key ids in `GET /api/v1/keys` and would otherwise
    # revoke the very key it runs with (allowed: a key may revoke itself), and test nothing after.
    made = await shop.client.post(
        "/api/v1/keys", json={"name": "fuzzer", "scopes": ["read", "write", "pii"]}, headers=shop.headers()
    )
    assert made.status_code == 201, made.text
    async with extra_gateway(stack, rate_limit_per_second=10_000.0, rate_limit_burst=10_000) as gateway:
        report, returncode = await _fuzz(gateway.url, made.json()["api_key"])
    assert returncode == 0, report[-20_000:]


async def _fuzz(gateway_url: str, api_key: str) -> tuple[str, int | None]:
    fuzzer = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{gateway_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {api_key}",
        # The key given here, not keys the fuzzer makes up for the security scheme.
        "--generation-with-security-parameters",
        "false",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        EXAMPLES,
        "--exclude-path-regex",
        "^/api/v1/(webhooks|admin)/",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-deterministic",
        "--request-timeout",
        "30",
        "--no-color",
        *os.environ.get("LAOKE_FUZZ_ARGS", "").split(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await fuzzer.communicate()
    return output.decode(errors="replace"), fuzzer.returncode
