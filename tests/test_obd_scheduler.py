"""The poll scheduler: due PIDs first, then by period; NO DATA drops a PID for a while."""

from __future__ import annotations

import logging

import pytest

from agent.obd.scheduler import NO_DATA_LIMIT, RETRY_AFTER, RETRY_MAX, PollScheduler


class Monotonic:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_due_pids_first_shortest_period_first_six_per_request() -> None:
    clock = Monotonic()
    periods = {0x2F: 30.0, 0x0C: 0.1, 0x0D: 0.5, 0x05: 10.0, 0x04: 1.0, 0x11: 1.0,
               0x42: 5.0, 0x46: 60.0}
    s = PollScheduler(periods, clock=clock)
    asked, wait = s.next()
    assert wait == 0.0
    assert asked == [0x0C, 0x0D, 0x04, 0x11, 0x42, 0x05]  # by period, at most six
    s.asked(asked, set(asked))
    asked, _ = s.next()
    assert asked == [0x2F, 0x46]  # the rest, still due
    s.asked(asked, set(asked))
    asked, wait = s.next()
    assert asked == [] and wait == pytest.approx(0.1)
    clock.advance(0.1)
    assert s.next()[0] == [0x0C]
    s.asked([0x0C], {0x0C})
    clock.advance(0.05)
    assert s.next() == ([], pytest.approx(0.05))  # 0C is due again at 0.2
    clock.advance(0.35)
    # both due now: the shorter period first
    assert s.next()[0] == [0x0C, 0x0D]


def test_period_zero_is_always_due_and_one_per_request_is_kept() -> None:
    clock = Monotonic()
    s = PollScheduler({0x0C: 0.0, 0x0D: 0.0}, per_request=1, clock=clock)
    for _ in range(5):
        asked, wait = s.next()
        assert wait == 0.0 and len(asked) == 1
        s.asked(asked, set(asked))
    assert s.pids[0x0C].asked + s.pids[0x0D].asked == 5


def test_a_late_caller_does_not_get_a_burst_of_catch_up_requests() -> None:
    clock = Monotonic()
    s = PollScheduler({0x0C: 1.0}, clock=clock)
    s.asked([0x0C], {0x0C})
    clock.advance(10.0)  # the adapter was busy (a DTC read, a reconnect)
    assert s.next()[0] == [0x0C]
    s.asked([0x0C], {0x0C})
    assert s.next() == ([], pytest.approx(1.0))


def test_no_data_three_times_drops_then_retries_after_a_doubling_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Monotonic()
    s = PollScheduler({0x0C: 1.0, 0x5C: 1.0}, clock=clock, name="obd0")
    caplog.set_level(logging.INFO, "agent.obd.scheduler")
    for i in range(NO_DATA_LIMIT):
        asked, _ = s.next()
        assert asked == [0x0C, 0x5C]
        dropped = s.asked(asked, {0x0C})
        assert dropped == ([0x5C] if i == NO_DATA_LIMIT - 1 else [])
        clock.advance(1.0)
    assert "obd0: PID 5C gave no answer 3 times in a row; asking again in 300 s" in caplog.text
    assert s.next()[0] == [0x0C]  # 5C is left out for RETRY_AFTER
    clock.advance(RETRY_AFTER)
    asked, _ = s.next()
    assert 0x5C in asked
    assert s.asked(asked, {0x0C}) == [0x5C]  # still nothing: dropped again, for longer
    clock.advance(RETRY_AFTER)
    assert s.next()[0] == [0x0C]
    clock.advance(RETRY_AFTER)
    asked, _ = s.next()
    assert 0x5C in asked
    s.asked(asked, {0x0C, 0x5C})  # it answers again: back in the rotation
    assert s.pids[0x5C].dropped_until is None and s.pids[0x5C].retry_after == RETRY_AFTER
    assert "PID 5C answers again" in caplog.text
    assert s.pids[0x5C].dropped == 2


def test_the_backoff_stops_doubling_at_its_maximum() -> None:
    clock = Monotonic()
    s = PollScheduler({0x5C: 1.0}, clock=clock)
    waits = []
    for _ in range(10):
        while True:
            asked, wait = s.next()
            if asked:
                break
            clock.advance(wait)
        c = s.pids[0x5C]
        before = c.retry_after
        if s.asked(asked, set()):
            waits.append(before)
    assert waits[:5] == [300.0, 600.0, 1200.0, 2400.0, RETRY_MAX]
    assert max(waits) == RETRY_MAX


def test_achieved_rate_per_pid() -> None:
    clock = Monotonic()
    s = PollScheduler({0x0C: 0.5, 0x2F: 2.0}, clock=clock)
    for _ in range(40):  # 10 s
        asked, wait = s.next()
        if asked:
            s.asked(asked, set(asked))
        else:
            clock.advance(wait)
    rates = s.rates()
    assert rates[0x0C] == pytest.approx(2.0, rel=0.1)
    assert rates[0x2F] == pytest.approx(0.5, rel=0.25)


def test_fewer_per_request_and_bad_arguments() -> None:
    s = PollScheduler({n: 1.0 for n in range(1, 10)}, clock=Monotonic())
    s.fewer_per_request(1)
    assert len(s.next()[0]) == 1
    with pytest.raises(ValueError, match="per_request"):
        PollScheduler({}, per_request=7)
    assert PollScheduler({}, clock=Monotonic()).next() == ([], float("inf"))
