"""Message templates: Jinja syntax (`{{name}}`) rendered in Jinja's immutable sandbox, with only the
variables Laoke knows how to fill. A template naming anything else, or reaching for Python internals,
is refused when it is saved, not when a campaign is half sent."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from laoke.kit.errors import Unprocessable

# What a template may use, with the sample each preview fills in.
VARIABLES: dict[str, Any] = {
    "name": "王小明",
    "tier": "黄金会员",
    "points": 1280,
    "coupon_code": "LK7W3QX9",
    "order_id": "TB20261111001",
    "order_amount": "199.00",
    "expiring_points": 300,
    "expires_at": "2026-12-31",
    "shop_name": "老客小店",
    "unsubscribe_url": "https://example.com/u/abc",
}
# How a buyer whose name nobody knows is greeted.
DEFAULT_NAME = "顾客"
# Aliyun (and the carriers) count every character alike, the 【signature】 included: 70 fit one SMS,
# a longer text is sent as parts of 67.
SMS_SINGLE, SMS_PART = 70, 67

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def check(*sources: str | None) -> None:
    """Refuse syntax errors, unknown variables and sandbox escapes (422)."""
    for source in filter(None, sources):
        try:
            parsed = _env.parse(source)
        except TemplateError as exc:
            raise Unprocessable(f"template does not parse: {exc}") from exc
        unknown = sorted(meta.find_undeclared_variables(parsed) - VARIABLES.keys())
        if unknown:
            raise Unprocessable(
                f"unknown variable(s) {', '.join(unknown)}; a template may use {', '.join(VARIABLES)}"
            )
        render(source, VARIABLES)


@dataclass(frozen=True)
class _Compiled:
    template: Template
    # A text of placeholders only (most are: "{{name}}，{{tier}}专享礼遇") as its literal pieces and
    # variable names, rendered by joining them: Jinja's own render spends most of its time setting up a
    # context, a quarter of a dispatcher's work during a campaign.
    pieces: tuple[str | tuple[str], ...] | None


def _placeholders_only(parsed: nodes.Template) -> tuple[str | tuple[str], ...] | None:
    pieces: list[str | tuple[str]] = []
    for node in parsed.body:
        if not isinstance(node, nodes.Output):
            return None
        for part in node.nodes:
            if isinstance(part, nodes.TemplateData):
                pieces.append(part.data)
            elif isinstance(part, nodes.Name) and part.ctx == "load":
                pieces.append((part.name,))
            else:
                return None
    return tuple(pieces)


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> _Compiled:
    # Compiling is ~1,000 times dearer than rendering; a campaign renders one text a million times.
    return _Compiled(_env.from_string(source), _placeholders_only(_env.parse(source)))


def placeholders(source: str) -> tuple[str | tuple[str], ...] | None:
    """A text of plain placeholders as its literal pieces and `(variable,)` pieces, in order; None for a
    text with anything more (filters, conditions), which only Jinja renders."""
    return _compiled(source).pieces


def render(source: str, variables: dict[str, Any]) -> str:
    compiled = _compiled(source)
    if compiled.pieces is not None:
        try:
            return "".join(p if isinstance(p, str) else str(variables[p[0]]) for p in compiled.pieces)
        except KeyError as exc:  # as Jinja's StrictUndefined words it
            raise Unprocessable(f"template does not render: '{exc.args[0]}' is undefined") from exc
    try:
        return compiled.template.render(**variables)
    except SecurityError as exc:
        raise Unprocessable(f"template refused by the sandbox: {exc}") from exc
    except TemplateError as exc:
        raise Unprocessable(f"template does not render: {exc}") from exc


def sms_parts(text: str, signature: str | None) -> tuple[int, int]:
    """(characters as the carrier counts them, SMS parts billed)."""
    length = len(text) + (len(signature) + 2 if signature else 0)
    return length, 1 if length <= SMS_SINGLE else math.ceil(length / SMS_PART)


@functools.lru_cache(maxsize=1024)
def _variables_of(source: str) -> frozenset[str]:
    return frozenset(meta.find_undeclared_variables(_env.parse(source)))


def used_variables(*sources: str | None) -> set[str]:
    return set().union(*(_variables_of(s) for s in sources if s))


_PLACEHOLDER = re.compile(r"{{\s*([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def variables_in_order(source: str) -> tuple[str, ...]:
    """The variables a text uses, in order of first appearance (Tencent's positional {1}, {2} …)."""
    return tuple(dict.fromkeys(v for v in _PLACEHOLDER.findall(source) if v in VARIABLES))
