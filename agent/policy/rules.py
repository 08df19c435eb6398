"""Per-signal minimum period and on-change filtering with a deadband.

For each sample the first configured rule whose glob matches its
``Message.Signal`` decides (no rule: keep every sample):

- ``min_period``: drop a sample that comes sooner than this after the last
  kept one of the same signal;
- ``on_change``: drop a sample whose value is within ``deadband`` of the last
  kept one (equal, when the deadband is 0), unless ``max_period`` has passed
  since the last kept one (a heartbeat).

State is kept per (channel, message, signal). Timestamps are the samples' own,
so a replay gives the same result at any speed.

The rules' globs are compiled once (:class:`agent.globs.GlobSet`) and the rule
of each signal is looked up once: 10,000 rules (the most a configuration may
have) cost well under a second over a DBC of 2,000 signals. A decoded record's
signals are a tuple its decoder reuses for every frame of the message (the
same page of a multiplexed one): what the rules do with each of them (its rule's
numbers, its state) is worked out once per tuple and channel, so a frame costs
a loop over its values and no look-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.config import SignalRule
from agent.frames import Decoded, Sample, SignalInfo
from agent.globs import GlobSet

MAX_PLANS = 65_536  # signal tuples remembered (a decoder has one per message page)

# the state of one (channel, message, signal): [timestamp, value] of the last kept
# sample, the timestamp None until one is kept
Slot = list[Any]
# one signal of a decoded record: its index, name, unit, its rule's
# (min_period, on_change, deadband, max_period) or None (no rule: keep all), its state
Step = tuple[int, str, str, tuple[float, bool, float, float | None] | None, Slot]


@dataclass
class RuleStats:
    kept: int = 0
    rate_limited: int = 0  # dropped by min_period
    unchanged: int = 0  # dropped by on_change


class RuleSet:
    """Applies the first matching rule to each sample."""

    def __init__(self, rules: Iterable[SignalRule] = ()) -> None:
        self.rules = tuple(rules)
        self._globs = GlobSet(r.match for r in self.rules)
        self.stats = RuleStats()
        self._rule_cache: dict[tuple[str, str], SignalRule | None] = {}
        # (channel, message, signal) -> its state
        self._last: dict[tuple[str, str, str], Slot] = {}
        # (channel, id of a decoder's signal tuple) -> (that tuple, the steps of its signals)
        self._plans: dict[tuple[str, int], tuple[tuple[SignalInfo, ...], tuple[Step, ...]]] = {}

    def rule_for(self, message: str, signal: str) -> SignalRule | None:
        key = (message, signal)
        try:
            return self._rule_cache[key]
        except KeyError:
            index = self._globs.first(message, signal)
            rule = None if index is None else self.rules[index]
            self._rule_cache[key] = rule
            return rule

    def keep(self, sample: Sample) -> bool:
        return self._keep(sample.channel, sample.message, sample.signal, sample.timestamp,
                          sample.value)

    def _slot(self, channel: str, message: str, signal: str) -> Slot:
        key = (channel, message, signal)
        slot = self._last.get(key)
        if slot is None:
            slot = self._last[key] = [None, 0]
        return slot

    def _keep(self, channel: str, message: str, signal: str, ts: float,
              value: float | int) -> bool:
        rule = self.rule_for(message, signal)
        stats = self.stats
        if rule is None:
            stats.kept += 1
            return True
        slot = self._slot(channel, message, signal)
        if slot[0] is not None:
            age = ts - slot[0]
            if 0 <= age < rule.min_period:
                stats.rate_limited += 1
                return False
            heartbeat_due = rule.max_period is not None and age >= rule.max_period
            if rule.on_change and not heartbeat_due and not _changed(slot[1], value, rule.deadband):
                stats.unchanged += 1
                return False
        slot[0], slot[1] = ts, value
        stats.kept += 1
        return True

    def filter(self, samples: Iterable[Sample]) -> list[Sample]:
        keep = self.keep
        return [s for s in samples if keep(s)]

    def filter_decoded(self, decoded: Decoded) -> list[Sample]:
        """The kept samples of one decoded frame (a Sample is made only when kept)."""
        if not self.rules:
            self.stats.kept += len(decoded.values)
            return decoded.samples()
        ts, channel, message, infos, values, labels, flags = decoded
        entry = self._plans.get((channel, id(infos)))
        if entry is None or entry[0] is not infos:
            entry = self._plan(channel, message, infos)
        out = []
        limited = unchanged = 0
        for i, name, unit, rule, slot in entry[1]:
            value = values[i]
            if rule is not None:
                last_ts = slot[0]
                if last_ts is not None:
                    age = ts - last_ts
                    min_period, on_change, deadband, max_period = rule
                    if 0 <= age < min_period:
                        limited += 1
                        continue
                    if on_change and (max_period is None or age < max_period):
                        old = slot[1]
                        if value == old or not _changed(old, value, deadband):
                            unchanged += 1
                            continue
                slot[0] = ts
                slot[1] = value
            out.append(Sample(ts, channel, message, name, value, unit,
                              labels[i] if labels is not None else None,
                              flags[i] if flags is not None else 0))
        stats = self.stats
        stats.kept += len(out)
        if limited:
            stats.rate_limited += limited
        if unchanged:
            stats.unchanged += unchanged
        return out

    def _plan(self, channel: str, message: str, infos: tuple[SignalInfo, ...]
              ) -> tuple[tuple[SignalInfo, ...], tuple[Step, ...]]:
        """The steps of a decoder's signal tuple on ``channel``, remembered."""
        steps = []
        for i, info in enumerate(infos):
            rule = self.rule_for(message, info.name)
            numbers = None if rule is None else (rule.min_period, rule.on_change, rule.deadband,
                                                 rule.max_period)
            steps.append((i, info.name, info.unit, numbers, self._slot(channel, message,
                                                                         info.name)))
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        entry = (infos, tuple(steps))
        self._plans[(channel, id(infos))] = entry
        return entry


def _changed(old: float | int, new: float | int, deadband: float) -> bool:
    if old != old or new != new:  # NaN: a change only when exactly one side is NaN
        return (old != old) != (new != new)
    if deadband == 0:
        return new != old
    return bool(math.fabs(new - old) > deadband)
