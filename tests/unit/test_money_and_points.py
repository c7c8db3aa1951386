from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from laoke.kit.money import from_fen, to_fen
from services.loyalty.program import ProgramSettings


def test_yuan_and_fen_convert_exactly() -> None:
    assert to_fen(Decimal("128.50")) == 12850
    assert to_fen(Decimal("0.01")) == 1
    assert from_fen(12850) == Decimal("128.50")
    assert from_fen(1) == Decimal("0.01")


def test_default_programme_gives_one_point_per_whole_yuan_kept() -> None:
    program = ProgramSettings()
    assert program.points_for(12850) == 128
    assert program.points_for(99) == 0
    assert program.points_for(20000 - 5050) == 149
    assert program.points_for(100 - 200) == 0


@pytest.mark.parametrize(
    ("rate", "rounding", "kept_fen", "points"),
    [
        ("1.5", "floor", 1099, 16),  # 16.485
        ("1.5", "round", 1099, 16),
        ("1.5", "ceil", 1099, 17),
        ("0.5", "round", 300, 2),  # 1.5 rounds half up
        ("2", "floor", 1, 0),
    ],
)
def test_earn_rate_and_rounding(rate: str, rounding: str, kept_fen: int, points: int) -> None:
    assert ProgramSettings(earn_rate=Decimal(rate), rounding=rounding).points_for(kept_fen) == points


def test_tiers_reached_by_spend_and_orders() -> None:
    program = ProgramSettings.model_validate(
        {
            "tiers": [
                {"level": 1, "name": "普通"},
                {"level": 2, "name": "银卡", "min_spend": "500"},
                {"level": 3, "name": "金卡", "min_spend": "2000", "min_orders": 5, "discount": 95},
            ]
        }
    )
    assert program.level_for(0, 0) == 1
    assert program.level_for(50_000, 1) == 2
    assert program.level_for(300_000, 4) == 2, "金卡 needs five orders too"
    assert program.level_for(300_000, 5) == 3


def test_annual_expiry_is_the_fixed_date_of_the_next_shop_local_year() -> None:
    program = ProgramSettings.model_validate({"expiry": {"mode": "annual", "month": 3, "day": 31}})
    # 2026-12-31 20:00 UTC is already 2027-01-01 in Shanghai: the points belong to 2027.
    credited = datetime(2026, 12, 31, 20, 0, tzinfo=UTC)
    assert program.expires_at(credited) == datetime(2028, 3, 30, 16, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="day is out of range"):
        ProgramSettings.model_validate({"expiry": {"mode": "annual", "month": 2, "day": 30}})
