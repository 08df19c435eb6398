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


# -- compiled globs (agent.globs) -------------------------------------------------------

from fnmatch import fnmatchcase  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agent.globs import FEW, GlobSet, literal_runs, unmatched_globs  # noqa: E402


def naive_first(patterns: list[str], message: str, signal: str) -> int | None:
    """The rule of the docs, written again with fnmatch: the first glob that matches."""
    for i, p in enumerate(patterns):
        if fnmatchcase(f"{message}.{signal}" if "." in p else signal, p):
            return i
    return None


NAME = st.text("abAB_1", min_size=1, max_size=4)
GLOB = st.text("abAB_1*?.[]!", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(GLOB, max_size=3 * FEW), NAME, NAME)
def test_globset_first_is_the_first_matching_glob(patterns: list[str], message: str,
                                                  signal: str) -> None:
    assert GlobSet(patterns).first(message, signal) == naive_first(patterns, message, signal)


def test_globset_literal_and_wildcard_order_and_case() -> None:
    globs = GlobSet(["Engine.Rpm*", "Rpm", "*", "Engine.Rpm"])
    assert globs.first("Engine", "Rpm") == 0
    assert globs.first("Gear", "Rpm") == 1
    assert globs.first("Gear", "X") == 2
    assert GlobSet(["x", "Engine.Rpm"]).first("Engine", "Rpm") == 1
    assert GlobSet(["rpm"]).first("Engine", "Rpm") is None
    assert GlobSet(["rpm", "ENGINE.*"], case_sensitive=False).first("Engine", "Rpm") == 0
    assert GlobSet(["ENGINE.*"], case_sensitive=False).first("Engine", "Rpm") == 0
    assert not GlobSet([]).matches("Engine", "Rpm")


def test_rules_first_match_wins_among_many_rules() -> None:
    """10,000 rules, literal and wildcard mixed: each signal gets the first that matches
    (RuleSet used to run fnmatch over every rule for every signal)."""
    rules = [SignalRule(match=f"Msg{i}.Sig{i}", min_period=float(i)) for i in range(9_000)]
    rules += [SignalRule(match=f"Msg{i}?.*", min_period=1e4 + i) for i in range(999)]
    rules.append(SignalRule(match="*", min_period=99_999.0))
    ruleset = RuleSet(rules)
    for i in (0, 5, 8_999):
        rule = ruleset.rule_for(f"Msg{i}", f"Sig{i}")
        assert rule is not None and rule.min_period == float(i)
    rule = ruleset.rule_for("Msg12", "Other")  # Msg1?.* is the first that matches
    assert rule is not None and rule.min_period == 1e4 + 1
    rule = ruleset.rule_for("Msg5", "Sig5")  # the literal rule 5 comes before Msg?.*
    assert rule is not None and rule.min_period == 5.0
    rule = ruleset.rule_for("Zzz", "Other")
    assert rule is not None and rule.min_period == 99_999.0


def test_unmatched_globs(tmp_path: object) -> None:
    class Signal:
        def __init__(self, name: str) -> None:
            self.name = name

    class Message:
        def __init__(self, name: str, signals: list[str]) -> None:
            self.name, self.signals = name, [Signal(s) for s in signals]

    class Database:
        messages = [Message("Engine", ["Rpm", "COUNTER"]), Message("Gear", ["Gear"])]

    globs = ["Engine.*", "Rpm", "rpm", "Nope*", "Gear.Rpm", "*", "Nope*", "counter",
             "[!x]ear"]
    assert unmatched_globs(globs, [Database()]) == ["rpm", "Nope*", "Gear.Rpm", "counter"]
    assert unmatched_globs(globs, [Database()], case_sensitive=False) == ["Nope*", "Gear.Rpm"]
    many = [f"Typo{i}*" for i in range(3 * FEW)] + ["G*", "?*", "*ea*"]
    assert unmatched_globs(many, [Database()]) == many[:-3]


@settings(max_examples=300, deadline=None)
@given(GLOB, NAME, NAME)
def test_literal_runs_are_in_every_name_a_glob_matches(pattern: str, message: str,
                                                       signal: str) -> None:
    subject = f"{message}.{signal}" if "." in pattern else signal
    if fnmatchcase(subject, pattern):
        assert all(run in subject for run in literal_runs(pattern))


def test_literal_runs() -> None:
    assert literal_runs("*Typo12*") == ["Typo12"]
    assert literal_runs("Msg1?.*") == ["Msg1", "."]
    assert literal_runs("[abc]x[!d]yz") == ["x", "yz"]
    assert literal_runs("a[bc") == ["a[bc"]
    assert literal_runs("*") == []


def test_filter_decoded_keeps_what_keep_keeps_sample_by_sample() -> None:
    """The per-tuple plans of filter_decoded decide exactly as keep() does, for every
    kind of rule (period, deadband, heartbeat, none), NaNs and ints equal to floats, two
    channels sharing a tuple, and keep() and filter_decoded sharing one signal's state."""
    import random

    from agent.frames import Decoded, SignalInfo

    rules = [SignalRule(match="M.Slow", min_period=0.5),
             SignalRule(match="M.Band", on_change=True, deadband=1.0, max_period=3.0),
             SignalRule(match="M.Exact", on_change=True)]
    infos = tuple(SignalInfo("M", name, "u", None, None, None, 1)
                  for name in ("Slow", "Band", "Exact", "Free"))
    rng = random.Random(7)
    choices = [0, 0, 1, 1.0, 2.5, float("nan"), -1]
    records = []
    ts = 0.0
    for _ in range(2_000):
        ts += rng.choice([0.0, 0.25, 0.5, 1.5, 3.0])  # exact in binary: ages hit the bounds
        values = tuple(rng.choice(choices) for _ in infos)
        records.append(Decoded(ts, rng.choice(["can0", "can1"]), "M", infos, values,
                               None, None))
    planned, plain = RuleSet(rules), RuleSet(rules)
    got, want = [], []
    for i, d in enumerate(records):
        if i % 7 == 0:  # now and then the same signal through keep(): one shared state
            sample = d.samples()[2]
            got.append(planned.keep(sample))
            want.append(plain.keep(sample))
            continue
        got.append(planned.filter_decoded(d))
        want.append([s for s in d.samples() if plain.keep(s)])
    assert repr(got) == repr(want)  # repr: nan == nan
    assert planned.stats == plain.stats
    assert plain.stats.kept and plain.stats.unchanged and plain.stats.rate_limited
