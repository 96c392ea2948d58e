"""Planning the chat's lines on paper: when each waiting answer goes out under Twitch's sliding window, and
how many answers must share a line when more are coming than the window has lines for."""

from __future__ import annotations

from claudegate.bots.outbox import SlidingWindow
from claudegate.bots.pacing import Planner, Upcoming, part_budget, project


def test_one_answer_per_line_goes_in_this_window_then_waits_for_the_next() -> None:
    window = SlidingWindow(3, 30.0)
    window.record(0.0)  # one line already sent at 0
    sends = project(window, 5.0, [Upcoming(5.0, 400)] * 4)
    assert sends == [5.0, 5.0, 30.0, 35.0]  # two left now; then as the sends at 0 and 5 leave the window


def test_answers_that_fit_together_share_a_line() -> None:
    window = SlidingWindow(1, 30.0)
    sends = project(window, 0.0, [Upcoming(0.0, 150)] * 6)
    assert sends == [0.0] * 3 + [30.0] * 3  # three of 150 characters fit 500 with their separators


def test_a_held_line_waits_for_answers_about_to_come() -> None:
    window = SlidingWindow(19, 30.0)
    upcoming = [Upcoming(0.0, 80), Upcoming(0.3, 80), Upcoming(2.0, 80)]
    assert project(window, 0.0, upcoming, hold_s=1.0) == [1.0, 1.0, 2.0]
    assert project(window, 0.0, upcoming) == [0.0, 0.3, 2.0]  # lines are plentiful: nothing is held


def test_answers_leave_the_last_line_of_a_window_to_notices_but_for_the_last_answer() -> None:
    window = SlidingWindow(3, 30.0)
    assert project(window, 0.0, [Upcoming(0.0, 400)] * 3, reserved=1) == [0.0, 0.0, 0.0]
    assert project(window, 0.0, [Upcoming(0.0, 400)] * 4, reserved=1) == [0.0, 0.0, 30.0, 30.0]
    assert project(window, 0.0, [Upcoming(0.0, 400)] * 2, lines_first=2) == [0.0, 30.0]


def test_more_answers_than_lines_share_lines_up_to_the_cap() -> None:
    window = SlidingWindow(19, 30.0)
    planner = Planner(horizon_s=10.0, max_per_line=6)
    assert planner.answers_per_line(window, 0.0, outstanding=1, lookahead_s=2.0) == 1
    assert planner.answers_per_line(window, 0.0, outstanding=30, lookahead_s=2.0) == 2
    assert planner.answers_per_line(window, 0.0, outstanding=300, lookahead_s=2.0) == 6
    moderator = SlidingWindow(95, 30.0)
    assert planner.answers_per_line(moderator, 0.0, outstanding=60, lookahead_s=2.0) == 1


def test_the_recent_rate_of_questions_counts_before_they_arrive() -> None:
    window = SlidingWindow(19, 30.0)
    planner = Planner(horizon_s=10.0, max_per_line=6)
    for i in range(10):
        planner.asked(i * 0.01)  # ten questions in a tenth of a second: a burst is starting
    assert planner.expected_more(0.1, 2.0) == 10 / 0.25 * 2.0
    assert planner.answers_per_line(window, 0.1, outstanding=10, lookahead_s=2.0) == 6
    assert planner.expected_more(10.0, 2.0) == 0  # seconds later, the burst is over


def test_lines_free_before_the_horizon_count_sends_that_leave_the_window() -> None:
    window = SlidingWindow(19, 30.0)
    for at in range(19):
        window.record(float(at))
    planner = Planner(horizon_s=10.0, max_per_line=6)
    assert planner.lines_free(window, 25.0) == 6  # the sends at 0-5 leave by 35


def test_a_shared_line_gives_each_answer_its_share_less_mention_and_separators() -> None:
    assert part_budget(1, 12, longest=437) == 437
    assert part_budget(6, 12, longest=437) == (500 - 3 * 5) // 6 - 13
