"""What the box works out itself: driving events, trips, maintenance reminders.

:class:`Insights` reads the kept samples (speed, acceleration, odometer,
ignition, battery voltage, coolant temperature: the signals named by
``[insights]``, :class:`InsightsConfig`) and gives back events on channel
``insights``: ``driving.*``, ``trip.start``, ``trip.end``, ``maintenance.*``.
docs/insights.md lists each event, its sentence, its threshold and where each
default comes from.
"""

from agent.insights.engine import CHANNEL, PRIORITY, Insights
from agent.insights.settings import RANGES, InsightsConfig, read_insights

__all__ = ["CHANNEL", "PRIORITY", "RANGES", "Insights", "InsightsConfig", "read_insights"]
