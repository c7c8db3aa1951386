"""Whole-shop answers for dashboards (the RFM summary, customer analytics over time), each counted by a
scan of the shop's profiles: exact while the scan is quick, served from the last count and refreshed
in the background for the largest shops (see `laoke.kit.cache.SlowAnswers` and the settings)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.cache import Computed, SlowAnswers
from laoke.kit.db import Database
from services.segmentation.settings import SegmentationSettings

T = TypeVar("T")


def _answers(request: Request) -> SlowAnswers[Any]:
    state = request.app.state
    answers: SlowAnswers[Any] | None = getattr(state, "summaries", None)
    if answers is None:
        settings: SegmentationSettings = state.settings
        answers = SlowAnswers(
            live_below=settings.summary_live_below_seconds,
            refresh_after=settings.summary_refresh_seconds,
            max_age=settings.summary_max_age_seconds,
        )
        state.summaries = answers
    return answers


async def answer(request: Request, key: str, count: Callable[[AsyncSession], Awaitable[T]]) -> Computed[T]:
    """`count` run in a session of its own (a background refresh outlives the request)."""
    db: Database = request.app.state.db

    async def compute() -> T:
        async with db.transaction() as session:
            return await count(session)

    return await _answers(request).get(key, compute)
