"""Decode the replies of an OBD-II channel into the pipeline's records.

An OBD source hands on each ECU's mode 01 reply as a frame: its id is the
ECU's reply id (0x7E8), its data the whole reply (``41 0C 1A F8 0D 32``: up to
six PIDs). This decoder turns one into one :class:`~agent.frames.Decoded`
record, message ``OBD`` for the engine ECU (``OBD_7E9`` for another), one
signal per PID field (``OBD.ENGINE_RPM``, unit from the PID), so that the
selection and the rules treat OBD values like any DBC signal.

The same counters as the DBC decoder's: replies decoded, replies that made no
sense (counted per ECU id in ``truncated``, logged once), replies of another
service (``unknown``). No value is flagged out of range: a PID's range is what
its bytes can say.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from agent.batch.model import SignalKey, SignalMeta
from agent.decode.decoder import DecodeStats
from agent.frames import Decoded, Frame, SignalInfo
from agent.obd import pids as pid_table
from agent.obd.transport import ENGINE_REPLIES

log = logging.getLogger(__name__)

MESSAGE = "OBD"
CAN_REPLIES = tuple(range(0x7E8, 0x7F0))  # the 11-bit reply ids of the eight ECUs


def message_name(ecu: int) -> str:
    """``OBD`` for the engine ECU's replies, ``OBD_7E9`` for another's."""
    return MESSAGE if ecu in ENGINE_REPLIES else f"{MESSAGE}_{ecu:X}"


class ObdDecoder:
    """Mode 01 replies -> Decoded records (see the module's docstring)."""

    def __init__(self, channel: str, wanted: Callable[[str, str], bool] = lambda m, s: True
                 ) -> None:
        self.channel = channel
        self.stats = DecodeStats()
        self._wanted = wanted
        # (message, pid) -> (indices of the selected fields, their SignalInfo)
        self._infos: dict[tuple[str, int], tuple[tuple[int, ...], tuple[SignalInfo, ...]]] = {}

    def _selected(self, message: str, pid: pid_table.Pid
                  ) -> tuple[tuple[int, ...], tuple[SignalInfo, ...]]:
        key = (message, pid.number)
        found = self._infos.get(key)
        if found is None:
            picked = [(i, f) for i, f in enumerate(pid.fields) if self._wanted(message, f.name)]
            found = (tuple(i for i, _ in picked),
                     tuple(SignalInfo(message, f.name, f.unit, f.minimum, f.maximum, None, 0)
                           for _, f in picked))
            self._infos[key] = found
        return found

    def decode(self, frame: Frame) -> Decoded | None:
        """The selected values of one mode 01 reply, or None (nothing selected, or a
        reply that makes no sense: counted)."""
        data = frame.data
        if data[:1] != b"\x41":  # not a mode 01 reply: the source hands on only those
            self.stats.unknown[frame.arbitration_id] += 1
            return None
        message = message_name(frame.arbitration_id)
        try:
            pairs = pid_table.split_mode01(data)
        except ValueError as exc:
            self._bad(frame, str(exc))
            return None
        infos: list[SignalInfo] = []
        values: list[int | float] = []
        for number, payload in pairs:
            pid = pid_table.PIDS[number]
            if not pid.fields:
                continue
            indices, selected = self._selected(message, pid)
            if not indices:
                continue
            try:
                decoded = pid.decode(payload)
            except ValueError as exc:
                self._bad(frame, str(exc))
                continue
            infos.extend(selected)
            values.extend(decoded[i] for i in indices)
        if not values:
            return None
        self.stats.decoded += 1
        # no range flags: a PID's range is what its bytes can say (SAE J1979)
        return Decoded(frame.timestamp, frame.channel, message, tuple(infos), tuple(values),
                       None, None)

    def _bad(self, frame: Frame, why: str) -> None:
        bad = self.stats.truncated
        if not bad[frame.arbitration_id]:
            log.warning("%s: ECU %X sent a reply that makes no sense (%s): %s", self.channel,
                        frame.arbitration_id, frame.data.hex(" "), why)
        bad[frame.arbitration_id] += 1


def catalogue() -> Any:
    """The OBD signals in the shape of a cantools database (``messages``, each with its
    ``name`` and ``signals``), for what looks at the signals a configuration can name:
    the engine's message ``OBD`` and each PID field."""
    fields = [SimpleNamespace(name=f.name) for p in pid_table.PIDS.values() for f in p.fields]
    return SimpleNamespace(messages=[SimpleNamespace(name=MESSAGE, signals=fields)])


def obd_metadata(channel: str, ecus: tuple[int, ...] = CAN_REPLIES
                 ) -> dict[SignalKey, SignalMeta]:
    """What the batches say about the OBD signals of ``channel``: unit and range."""
    out: dict[SignalKey, SignalMeta] = {}
    for ecu in ecus:
        message = message_name(ecu)
        for pid in pid_table.PIDS.values():
            for f in pid.fields:
                out[(channel, message, f.name)] = SignalMeta(unit=f.unit, minimum=f.minimum,
                                                            maximum=f.maximum)
    return out
