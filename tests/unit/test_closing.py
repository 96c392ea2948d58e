"""Closing services at shutdown in a bounded time: a step that hangs (Redis or the database not answering,
a step that ignores its cancellation) is left behind at its limit, and the steps after it still run, all
within the budget, so the process ends before its supervisor kills it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from claudegate.runtime.closing import CloseStep, close_in_order
from tests.unit.virtual_time import now, virtual_time


async def forever() -> None:
    await asyncio.get_running_loop().create_future()


@virtual_time
async def test_a_step_that_never_ends_is_left_behind_and_the_next_steps_still_run() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    started = now()
    await close_in_order(
        [
            CloseStep("the writer", lambda: close("writer"), 5.0),
            CloseStep("redis", forever, 1.5),
            CloseStep("the database", lambda: close("database"), 1.0),
        ],
        budget_s=7.0,
    )
    assert closed == ["writer", "database"]
    assert now() - started == pytest.approx(1.5)  # the time the hung step was given, no more


@virtual_time
async def test_a_step_that_ignores_its_cancellation_does_not_hold_the_shutdown() -> None:
    released = asyncio.Event()
    closed: list[str] = []

    async def stubborn() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            await released.wait()  # e.g. a driver that finishes its write before it lets go

    async def database() -> None:
        closed.append("database")

    started = now()
    await close_in_order([CloseStep("redis", stubborn, 1.0), CloseStep("db", database, 1.0)], budget_s=7.0)
    assert closed == ["database"]
    assert now() - started == pytest.approx(1.0)
    released.set()


@virtual_time
async def test_the_budget_bounds_all_the_steps_together() -> None:
    started = now()
    await close_in_order([CloseStep(f"step {n}", forever, 3.0) for n in range(5)], budget_s=7.0)
    assert now() - started == pytest.approx(7.0)


@virtual_time
async def test_a_step_that_fails_is_logged_and_the_next_steps_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []

    async def failing() -> None:
        raise ConnectionError("Redis went away")

    async def database() -> None:
        closed.append("database")

    with caplog.at_level(logging.WARNING, logger="claudegate.runtime.closing"):
        await close_in_order([CloseStep("redis", failing, 1.0), CloseStep("db", database, 1.0)], budget_s=7.0)
    assert closed == ["database"]
    assert "closing redis failed" in caplog.text
