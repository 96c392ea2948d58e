"""A reservation taken through ``take_or_give_back`` is never lost to a cancellation: a caller cancelled
while the take is under way gives back what it took, even when cancelled again meanwhile or when the
give-back fails; a caller left alone gets what the take returned, or its error, and gives back nothing."""

from __future__ import annotations

import asyncio

import pytest

from claudegate.pipeline.cancel_safe import take_or_give_back


class Reservations:
    """A take that waits for ``let_go`` after taking, and a give-back that can be held the same way."""

    def __init__(self) -> None:
        self.held = 0
        self.taken = asyncio.Event()
        self.let_go = asyncio.Event()
        self.giving_back = asyncio.Event()
        self.give_back_let_go = asyncio.Event()
        self.give_back_let_go.set()
        self.give_back_fails = False

    async def take(self) -> int:
        self.held += 1
        self.taken.set()
        await self.let_go.wait()
        return 1

    async def give_back(self, amount: int) -> None:
        self.giving_back.set()
        await self.give_back_let_go.wait()
        if self.give_back_fails:
            raise ConnectionError("gone")
        self.held -= amount


async def test_a_caller_left_alone_keeps_what_it_took() -> None:
    reservations = Reservations()
    reservations.let_go.set()
    assert await take_or_give_back(reservations.take(), reservations.give_back) == 1
    assert reservations.held == 1


async def test_a_failed_take_raises_its_error_and_gives_nothing_back() -> None:
    async def failing() -> int:
        raise ConnectionError("refused")

    reservations = Reservations()
    with pytest.raises(ConnectionError):
        await take_or_give_back(failing(), reservations.give_back)
    assert not reservations.giving_back.is_set()


async def test_a_caller_cancelled_during_the_take_gives_back_what_it_took() -> None:
    reservations = Reservations()
    caller = asyncio.create_task(take_or_give_back(reservations.take(), reservations.give_back))
    await reservations.taken.wait()
    caller.cancel()
    reservations.let_go.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert reservations.held == 0


async def test_a_caller_cancelled_again_while_giving_back_still_gives_back() -> None:
    reservations = Reservations()
    reservations.give_back_let_go.clear()
    caller = asyncio.create_task(take_or_give_back(reservations.take(), reservations.give_back))
    await reservations.taken.wait()
    caller.cancel()
    reservations.let_go.set()
    await reservations.giving_back.wait()
    caller.cancel()  # e.g. shutdown, after a client left
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert reservations.held == 1  # the give-back goes on without the caller
    reservations.give_back_let_go.set()
    for _ in range(100):  # a few turns of the loop: the give-back's own steps
        if not reservations.held:
            break
        await asyncio.sleep(0)
    assert reservations.held == 0


async def test_a_failed_give_back_still_lets_the_cancellation_through() -> None:
    reservations = Reservations()
    reservations.give_back_fails = True
    caller = asyncio.create_task(take_or_give_back(reservations.take(), reservations.give_back))
    await reservations.taken.wait()
    caller.cancel()
    reservations.let_go.set()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_a_timeout_around_the_take_is_still_a_timeout() -> None:
    reservations = Reservations()

    async def within_a_timeout() -> int:
        async with asyncio.timeout(0):
            return await take_or_give_back(reservations.take(), reservations.give_back)

    caller = asyncio.create_task(within_a_timeout())
    await reservations.taken.wait()
    reservations.let_go.set()
    with pytest.raises(TimeoutError):
        await caller
    assert reservations.held == 0
