"""Selection globs, minimum periods, on-change with deadband and heartbeats."""

from __future__ import annotations

import math

from agent.config import SignalRule
from agent.frames import Sample
from agent.policy.rules import RuleSet
from agent.policy.selection import Selector


def test_selector_globs() -> None:
    select = Selector(include=["Engine.*", "Speed*"], exclude=["*Counter", "Engine.Temp"])
    assert select("Engine", "Rpm")
    assert not select("Engine", "Temp")
    assert not select("Engine", "Engine_Counter")
    assert select("Wheels", "SpeedFL")  # no dot: the signal name alone
    assert not select("Wheels", "speedFL")  # case-sensitive, like DBC names
    assert not select("Body", "Door")


def run(rules: list[SignalRule], points: list[tuple[float, float]], signal: str = "Rpm",
        ) -> list[tuple[float, float]]:
    ruleset = RuleSet(rules)
    samples = [Sample(t, "can0", "Engine", signal, v) for t, v in points]
    return [(s.timestamp, s.value) for s in ruleset.filter(samples)]


def test_no_rule_keeps_everything() -> None:
    points = [(0.0, 1.0), (0.0, 1.0), (0.1, 1.0)]
    assert run([SignalRule(match="Other.*", min_period=10)], points) == points


def test_min_period() -> None:
    points = [(i * 0.04, float(i)) for i in range(10)]  # every 40 ms
    kept = run([SignalRule(match="Engine.Rpm", min_period=0.1)], points)
    assert [t for t, _ in kept] == [0.0, 0.12, 0.24, 0.36]


def test_on_change_with_deadband_compares_to_last_kept_value() -> None:
    values = [100, 104, 106, 103, 111, 111, 100]
    points = [(float(i), float(v)) for i, v in enumerate(values)]
    kept = run([SignalRule(match="*", on_change=True, deadband=5)], points)
    assert [v for _, v in kept] == [100, 106, 100]


def test_on_change_exact_and_heartbeat() -> None:
    points = [(float(t), 7.0) for t in range(0, 25)] + [(25.0, 8.0)]
    kept = run([SignalRule(match="Rpm", on_change=True, max_period=10)], points)
    assert kept == [(0.0, 7.0), (10.0, 7.0), (20.0, 7.0), (25.0, 8.0)]


def test_first_matching_rule_wins_and_stats() -> None:
    ruleset = RuleSet([SignalRule(match="Engine.Rpm", min_period=1.0),
                       SignalRule(match="*", on_change=True)])
    samples = [Sample(0.0, "c", "Engine", "Rpm", 1), Sample(0.5, "c", "Engine", "Rpm", 2),
               Sample(0.0, "c", "Engine", "Temp", 1), Sample(0.5, "c", "Engine", "Temp", 1)]
    assert len(ruleset.filter(samples)) == 2
    assert (ruleset.stats.kept, ruleset.stats.rate_limited, ruleset.stats.unchanged) == (2, 1, 1)


def test_state_is_per_channel() -> None:
    ruleset = RuleSet([SignalRule(match="*", on_change=True)])
    kept = ruleset.filter([Sample(0.0, "a", "M", "S", 1), Sample(0.0, "b", "M", "S", 1)])
    assert len(kept) == 2


def test_nan_changes() -> None:
    nan = math.nan
    points = [(0.0, nan), (1.0, nan), (2.0, 1.0), (3.0, nan)]
    kept = run([SignalRule(match="*", on_change=True)], points)
    assert [t for t, _ in kept] == [0.0, 2.0, 3.0]


def test_backwards_timestamps_do_not_stall_a_signal() -> None:
    points = [(10.0, 1.0), (5.0, 2.0), (5.05, 3.0)]
    kept = run([SignalRule(match="*", min_period=1.0)], points)
    assert kept == [(10.0, 1.0), (5.0, 2.0)]
