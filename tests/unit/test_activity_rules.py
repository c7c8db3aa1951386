"""The pure rules of engagement activities: slots in the shop's time zone, survey answers, price
guesses and what each type must be created with."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.loyalty import activities
from services.loyalty.activities import NotLive, OutsideSlot, OutsideWindow
from services.loyalty.activity_schemas import ActivityIn, ParticipationIn
from services.loyalty.models import Activity
from services.loyalty.participations import InvalidAnswer, _survey_answer
from services.loyalty.program import ProgramSettings

WINDOW = {"starts_at": "2026-11-01T00:00:00+08:00", "ends_at": "2026-12-01T00:00:00+08:00"}


def created(**body: Any) -> ActivityIn:
    return ActivityIn.model_validate({**WINDOW, **body})


def stored(spec: ActivityIn, status: str = "live") -> Activity:
    return Activity(
        id="act_test",
        shop_id="shop",
        type=spec.type,
        title=spec.title,
        status=status,
        starts_at=spec.starts_at,
        ends_at=spec.ends_at,
        rules=spec.rules().model_dump(mode="json"),
    )


GRAB = created(
    type="grab", title="抢红包", slot_stock=100, reward_points=8, slots=[{"start": "10:00", "end": "10:10"}]
)


def test_slots_are_read_in_the_shops_time_zone() -> None:
    activity, rules = stored(GRAB), GRAB.rules()
    shanghai = ProgramSettings(timezone="Asia/Shanghai")
    # 02:05 UTC is 10:05 in Shanghai: inside the slot, named by the shop-local day.
    assert activities.slot_now(activity, rules, shanghai, datetime(2026, 11, 11, 2, 5, tzinfo=UTC)) == (
        "2026-11-11#0"
    )
    with pytest.raises(OutsideSlot, match="10:00–10:10"):
        activities.slot_now(activity, rules, shanghai, datetime(2026, 11, 11, 10, 5, tzinfo=UTC))
    # The same instant is 10:05 in Shanghai but 03:05 in Berlin.
    berlin = ProgramSettings(timezone="Europe/Berlin")
    with pytest.raises(OutsideSlot):
        activities.slot_now(activity, rules, berlin, datetime(2026, 11, 11, 2, 5, tzinfo=UTC))


def test_windows_and_status_are_checked_before_slots() -> None:
    rules = GRAB.rules()
    program = ProgramSettings()
    with pytest.raises(OutsideWindow):
        activities.slot_now(stored(GRAB), rules, program, datetime(2026, 12, 2, 2, 5, tzinfo=UTC))
    with pytest.raises(NotLive):
        activities.slot_now(stored(GRAB, "draft"), rules, program, datetime(2026, 11, 11, 2, 5, tzinfo=UTC))


SURVEY = created(
    type="survey",
    title="问卷",
    questions=[
        {"id": "skin_type", "text": "肤质", "options": ["dry", "oily"]},
        {
            "id": "wishes",
            "text": "想要",
            "kind": "multiple",
            "options": ["面霜", "精华"],
            "attribute": "wish",
        },
        {"id": "advice", "text": "建议", "kind": "text", "required": False},
    ],
)


def answer(**answers: Any) -> dict[str, Any]:
    return _survey_answer(SURVEY.rules(), ParticipationIn(customer_id="cus_1", answers=answers))


def test_survey_answers_become_attributes_under_their_names() -> None:
    assert answer(skin_type="dry", wishes="面霜") == {"skin_type": "dry", "wish": ["面霜"]}
    assert answer(skin_type="oily", wishes=["面霜", "精华"], advice="好") == {
        "skin_type": "oily",
        "wish": ["面霜", "精华"],
        "advice": "好",
    }


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ({"skin_type": "dry", "wishes": ["面霜"], "colour": "red"}, "unknown question 'colour'"),
        ({"skin_type": "normal", "wishes": ["面霜"]}, "no option 'normal'"),
        ({"skin_type": ["dry"], "wishes": ["面霜"]}, "takes one answer"),
        ({"wishes": ["面霜"]}, "'skin_type' needs an answer"),
        ({"skin_type": "dry", "wishes": ["面霜", "面霜"]}, "chosen twice"),
        ({"skin_type": "dry", "wishes": [], "advice": "x"}, "'wishes' needs an answer"),
    ],
)
def test_bad_survey_answers_say_what_is_wrong(answers: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidAnswer, match=problem):
        answer(**answers)


def test_a_guess_wins_within_the_tolerance_either_side() -> None:
    rules = created(type="guess_price", title="猜", price="129.00", tolerance="5.00", reward_points=1).rules()
    assert activities.guess_wins(rules, Decimal("124.00")) and activities.guess_wins(rules, Decimal("134.00"))
    assert not activities.guess_wins(rules, Decimal("134.01"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"type": "survey", "title": "s"}, "a survey needs questions"),
        ({"type": "vote", "title": "v", "options": [{"id": "a", "label": "A"}]}, "at least two options"),
        ({"type": "grab", "title": "g", "reward_points": 1}, "slot_stock"),
        ({"type": "guess_price", "title": "g", "price": "9.90", "reward_points": 1}, "tolerance"),
        ({"type": "favorite_shop", "title": "f"}, "give a reward"),
        ({"type": "favorite_shop", "title": "f", "reward_points": 1, "questions": []}, None),
        ({"type": "favorite_shop", "title": "f", "reward_points": 1, "passphrase": "x"}, "belongs to grab"),
        ({"type": "referral", "title": "r", "reward_points": 1, "cost_points": 5}, "costs nothing"),
        (
            {"type": "task_chain", "title": "c", "reward_points": 1, "tasks": [{"type": "activity"}]},
            "names the activity_id",
        ),
        (
            {"type": "survey", "title": "s", "questions": [{"id": "Q1", "text": "x", "kind": "text"}]},
            "pattern",
        ),
        (
            {
                "type": "grab",
                "title": "g",
                "slot_stock": 1,
                "reward_points": 1,
                "slots": [{"start": "10:00", "end": "09:00"}],
            },
            "end must come after",
        ),
    ],
)
def test_each_type_is_created_with_what_it_needs(body: dict[str, Any], problem: str | None) -> None:
    if problem is None:
        assert created(**body).type == body["type"]
        return
    with pytest.raises(ValidationError, match=problem):
        created(**body)


def test_tasks_and_votes_pay_once_per_member() -> None:
    assert created(type="favorite_shop", title="f", reward_points=1, per_member_limit=5).per_member_limit == 1
    assert created(type="referral", title="r", reward_points=1).per_member_limit is None
