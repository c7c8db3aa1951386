"""What every console page shares: the signed-in session, the API client, rendering and language.

The console is one more client of Laoke's own HTTP API. It calls the gateway in-process (through
`httpx.ASGITransport`, so through the same authentication, scopes, rate limits and routing as any
third-party app) with the shop's API key. The key is kept in an HttpOnly, SameSite=Strict cookie,
signed with the gateway's internal secret, so a page can neither read it nor have it sent by another
site.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from gateway.console.i18n import LANGUAGES, api_message, translator, value_labeler

SESSION_COOKIE = "laoke_console"
LANGUAGE_COOKIE = "laoke_lang"
ZONE_COOKIE = "laoke_zone"  # the shop's time zone, set at sign-in
CURRENCY_COOKIE = "laoke_currency"  # the shop's currency, set at sign-in
# How a shop owner writes a sum in the shop's currency; another currency is shown by its code.
CURRENCY_SIGNS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$", "TWD": "NT$"}
DEFAULT_ZONE = "Asia/Shanghai"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


_WHOLE = re.compile(r"[+-]?[0-9]{1,12}")


def whole_number(typed: str) -> int | str:
    """A form's whole number as one; anything else as typed, so the API refuses it naming the field
    (`str.isdigit` also takes "²", which `int` does not)."""
    text = typed.strip().replace("＋", "+").replace("－", "-").replace(" ", "")
    return int(text) if _WHOLE.fullmatch(text) else typed


def optional_number(typed: str) -> int | str | None:
    """A number box that may stay empty (no limit, the default): None when empty, else `whole_number`."""
    return whole_number(typed) if typed.strip() else None


def typed_list(typed: str) -> list[str]:
    """A list typed in one box, "包邮，生日双倍积分": a Chinese comma, a comma or 、 between the items."""
    return [part.strip() for part in re.split(r"[,，、]", typed) if part.strip()]


def yuan(value: object) -> str:
    """`17682143.26` → `17,682,143.26`: a shop owner reads big sums by their thousands."""
    try:
        return f"{Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def count(value: object) -> str:
    """`1572` → `1,572`: counts of customers, points and messages read by their thousands too."""
    try:
        return f"{int(str(value)):,}"
    except ValueError:
        return str(value)


templates.env.filters["yuan"] = yuan
templates.env.filters["count"] = count


class SignedOut(Exception):
    """No valid session: the page redirects to the sign-in form."""


def _mac(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def session_value(secret: str, api_key: str) -> str:
    payload = base64.urlsafe_b64encode(api_key.encode()).decode()
    return f"{payload}.{_mac(secret, payload.encode())}"


def api_key_of(request: Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE, "")
    payload, _, mac = raw.partition(".")
    secret = request.app.state.settings.internal_secret
    if not payload or not hmac.compare_digest(mac, _mac(secret, payload.encode())):
        return None
    try:
        return base64.urlsafe_b64decode(payload.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass
class Answer:
    status: int
    body: Any
    lang: str = "en"
    headers: httpx.Headers = field(default_factory=httpx.Headers)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The API's `detail`, its validation messages in the page's language."""
        if isinstance(self.body, dict) and "detail" in self.body:
            return api_message(str(self.body["detail"]), self.lang)
        return f"HTTP {self.status}"


class Api:
    """The shop's API, called in-process with its key."""

    def __init__(self, request: Request, api_key: str) -> None:
        self.lang = language(request)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=request.app),
            base_url="http://console.laoke",
            headers={
                "Authorization": f"Bearer {api_key}",
                "X-Request-Id": request.headers.get("x-request-id", ""),
            },
            timeout=60,
        )

    async def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        response = await self.client.request(method, path, **kwargs)
        if response.status_code == 401:
            raise SignedOut
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text
        return Answer(response.status_code, body, self.lang, response.headers)

    async def get(self, path: str, **params: Any) -> Any:
        """The body of a GET that must succeed (a page cannot show anything without it)."""
        answer = await self.call("GET", path, params={k: v for k, v in params.items() if v not in (None, "")})
        if not answer.ok:
            raise PageError(answer)
        return answer.body

    async def raw(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def close(self) -> None:
        await self.client.aclose()


class PageError(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.error)
        self.answer = answer


def language(request: Request) -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE, "zh")
    return chosen if chosen in LANGUAGES else "zh"


def words(request: Request) -> tuple[Callable[[str], str], Callable[[str, str | None], str]]:
    """The page language's `t(text)` and `v(kind, value)` (gateway/console/i18n.py)."""
    lang = language(request)
    return translator(lang), value_labeler(lang)


def shop_zone(request: Request) -> ZoneInfo:
    """The shop's time zone: the API answers in UTC, a shop owner reads the shop's clock."""
    try:
        return ZoneInfo(request.cookies.get(ZONE_COOKIE) or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def currency_sign(request: Request) -> str:
    """`¥` for a CNY shop (and any shop signed in before the currency was kept), `$` for a USD one."""
    code = request.cookies.get(CURRENCY_COOKIE) or "CNY"
    return CURRENCY_SIGNS.get(code, f"{code} ")


def local_time(value: str | None, zone: ZoneInfo) -> str:
    """`2026-12-07T15:50:12Z` → `2026-12-07 23:50` on a Shanghai shop's pages; — for no time."""
    if not value:
        return "—"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (at.astimezone(zone) if at.tzinfo else at).strftime("%Y-%m-%d %H:%M")


def shop_time(typed: str, zone: ZoneInfo) -> str | None:
    """A browser's `datetime-local` (`2026-11-11T20:00`, no zone) read on the shop's clock; what is not
    one goes to the API as typed, so its message names the field."""
    if not typed:
        return None
    try:
        at = datetime.fromisoformat(typed)
    except ValueError:
        return typed
    return (at if at.tzinfo else at.replace(tzinfo=zone)).isoformat()


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    t, v = words(request)
    zone = shop_zone(request)
    return templates.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "v": v,
            "when": lambda value: local_time(value, zone),
            "currency": currency_sign(request),
            "lang": language(request),
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def field_errors(answer: Answer) -> dict[str, str]:
    """A 422's detail split per field (`body.tiers.1.discount: …; name: …`) so each form field shows
    its own message; what names no field goes under `_`."""
    errors: dict[str, str] = {}
    for part in answer.error.split("; "):
        where, sep, message = part.partition(": ")
        if not sep:
            errors["_"] = part
            continue
        name = where.removeprefix("body.").split(".")[0]
        errors["_" if name == "body" else name] = message
    return errors


# What a customer export holds, for a segment's members and for a filtered customer list alike: the
# item's field and the column's heading.
EXPORT_COLUMNS = (
    ("customer_id", "Customer ID"),
    ("name", "Customer name"),
    ("nick", "Nick"),
    ("mobile", "Mobile"),
    ("lifecycle", "Lifecycle"),
    ("rfm_segment_name", "Class"),
    ("tier", "Tier"),
    ("orders_count", "Orders"),
    ("total_spent", "Spent"),
    ("last_order_at", "Last order"),
)


def csv_download(request: Request, path: str, params: dict[str, str], filename: str) -> StreamingResponse:
    """Every item of a paged customer list of the API (`path` with `params`), page by page as it is
    read, as CSV for a person with a spreadsheet: headings and labels in the page's language, times
    on the shop's clock, UTF-8 with a BOM so that Excel reads the Chinese. Memory stays one page
    whatever the size."""
    # The request's client closes when the endpoint returns, before the body streams: the stream has its own.
    key = api_key_of(request)
    assert key is not None
    stream_api = Api(request, key)
    t, _ = words(request)
    zone = shop_zone(request)

    def cell(item: dict[str, Any], field: str) -> object:
        value = item.get(field)
        if value is None:
            return ""
        if field == "lifecycle":
            return t(value)
        return local_time(value, zone) if field == "last_order_at" else value

    async def rows() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        csv.writer(buffer).writerow([t(heading) for _, heading in EXPORT_COLUMNS])
        yield ("\ufeff" + buffer.getvalue()).encode()
        cursor: str | None = None
        try:
            while True:
                page = await stream_api.get(path, **params, limit=200, cursor=cursor)
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                for item in page["items"]:
                    writer.writerow([cell(item, field) for field, _ in EXPORT_COLUMNS])
                yield buffer.getvalue().encode()
                cursor = page.get("next_cursor")
                if not cursor:
                    return
        finally:
            await stream_api.close()

    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)
