"""Quiet hours, templates and SMS length: the rules messaging applies before anything is sent."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from laoke.kit.errors import Unprocessable
from services.messaging import templates
from services.messaging.channels import normalise_email, normalise_mobile
from services.messaging.policy import ShopPolicy


def test_quiet_hours_across_midnight_defer_to_nine_shanghai_time() -> None:
    policy = ShopPolicy()  # 21:00–09:00 Asia/Shanghai
    assert policy.quiet_until(datetime(2026, 5, 1, 13, 30, tzinfo=UTC)) == datetime(
        2026, 5, 2, 1, 0, tzinfo=UTC
    )
    assert policy.quiet_until(datetime(2026, 5, 1, 0, 59, 59, tzinfo=UTC)) == datetime(
        2026, 5, 1, 1, 0, tzinfo=UTC
    )
    # 21:00 sharp is quiet, 09:00 sharp is not, 20:59:59 is not.
    assert policy.quiet_until(datetime(2026, 5, 1, 13, 0, tzinfo=UTC)) is not None
    assert policy.quiet_until(datetime(2026, 5, 1, 1, 0, tzinfo=UTC)) is None
    assert policy.quiet_until(datetime(2026, 5, 1, 12, 59, 59, tzinfo=UTC)) is None


def test_quiet_hours_within_one_day_and_none() -> None:
    lunch = ShopPolicy(timezone="UTC", quiet_start=time(12, 0), quiet_end=time(14, 0))
    assert lunch.quiet_until(datetime(2026, 5, 1, 13, 0, tzinfo=UTC)) == datetime(
        2026, 5, 1, 14, 0, tzinfo=UTC
    )
    assert lunch.quiet_until(datetime(2026, 5, 1, 14, 0, tzinfo=UTC)) is None
    assert ShopPolicy(quiet_start=None, quiet_end=None).quiet_until(datetime(2026, 5, 1, tzinfo=UTC)) is None


def test_policy_refuses_an_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        ShopPolicy(timezone="Mars/Olympus")


def test_template_renders_chinese_text_with_known_variables() -> None:
    templates.check("亲爱的{{name}}，您有{{points}}积分即将到期")
    assert templates.render("{{name}}您好", {"name": "王小明"}) == "王小明您好"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("您好 {{nickname}}", "unknown variable"),
        ("{{ name.__class__.__mro__ }}", "sandbox|does not render"),
        ("{{ ''.__class__.__subclasses__() }}", "sandbox|does not render"),
        ("{% for x in range(10) %}", "does not parse"),
    ],
)
def test_template_refuses_unknown_variables_escapes_and_bad_syntax(source: str, message: str) -> None:
    with pytest.raises(Unprocessable, match=message):
        templates.check(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{name}}，{{tier}}专享礼遇",
        "Hi {{ name }}\n\n",
        "",
        "{{points}}分 {{ points }}",
        "{{name|upper}} and {{tier}}",
        "{% if points > 100 %}{{name}}{% else %}顾客{% endif %}",
        "{{ '{{' }}{{name}}",
    ],
)
def test_placeholder_templates_render_as_jinja_does(source: str) -> None:
    variables = {"name": "王小明", "tier": None, "points": 1280}
    expected = templates._env.from_string(source).render(**variables)
    assert templates.render(source, variables) == expected


def test_a_missing_variable_is_refused_the_same_way_on_either_path() -> None:
    for source in ("{{name}}您好", "{{name|upper}}您好"):
        with pytest.raises(Unprocessable, match="'name' is undefined"):
            templates.render(source, {})


def test_sms_parts_count_the_signature_and_split_at_67() -> None:
    assert templates.sms_parts("好" * 64, "老客小店") == (70, 1)
    assert templates.sms_parts("好" * 65, "老客小店") == (71, 2)
    assert templates.sms_parts("好" * 129, "老客小店") == (135, 3)


def test_contacts_are_normalised_or_refused() -> None:
    assert normalise_mobile("+86 138-0013-8000") == "13800138000"
    assert normalise_mobile("12345") is None
    assert normalise_email("Wang@Example.COM") == "Wang@example.com"
    assert normalise_email("not-an-email") is None
