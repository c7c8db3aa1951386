"""Segmentation tests run at a fixed moment (`shopping.NOW`), so day counts are exact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from laoke.kit import clock
from tests.integration.segmentation.shopping import NOW


@pytest.fixture
def frozen() -> Iterator[None]:
    clock.travel(NOW)
    try:
        yield
    finally:
        clock.reset()
