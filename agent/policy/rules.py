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
have) cost well under a second over a DBC of 2,000 signals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from agent.config import SignalRule
from agent.frames import Decoded, Sample
from agent.globs import GlobSet


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
        # (channel, message, signal) -> (timestamp, value) of the last kept sample
        self._last: dict[tuple[str, str, str], tuple[float, float | int]] = {}

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

    def _keep(self, channel: str, message: str, signal: str, ts: float,
              value: float | int) -> bool:
        rule = self.rule_for(message, signal)
        stats = self.stats
        if rule is None:
            stats.kept += 1
            return True
        key = (channel, message, signal)
        last = self._last.get(key)
        if last is not None:
            age = ts - last[0]
            if 0 <= age < rule.min_period:
                stats.rate_limited += 1
                return False
            heartbeat_due = rule.max_period is not None and age >= rule.max_period
            if rule.on_change and not heartbeat_due and not _changed(last[1], value, rule.deadband):
                stats.unchanged += 1
                return False
        self._last[key] = (ts, value)
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
        ts, channel, message, values = (decoded.timestamp, decoded.channel, decoded.message,
                                        decoded.values)
        labels, flags = decoded.labels, decoded.flags
        keep = self._keep
        return [
            Sample(ts, channel, message, info.name, values[i], info.unit,
                   labels[i] if labels is not None else None,
                   flags[i] if flags is not None else 0)
            for i, info in enumerate(decoded.signals)
            if keep(channel, message, info.name, ts, values[i])
        ]


def _changed(old: float | int, new: float | int, deadband: float) -> bool:
    if old != old or new != new:  # NaN: a change only when exactly one side is NaN
        return (old != old) != (new != new)
    if deadband == 0:
        return new != old
    return bool(math.fabs(new - old) > deadband)
