"""Packing the model's values into frames: signals, rolling counters, checksums."""

from __future__ import annotations

from typing import Any, NamedTuple

from agent.errors import DbcError


class _Field(NamedTuple):
    name: str
    lo: float
    hi: float
    default: float
    offset: float
    scale: float
    shift: int
    mask: int
    big: bool


def checksum_ok(frame_data: bytes, checksum_byte: int) -> bool:
    """True when byte ``checksum_byte`` is the sum of the other bytes modulo 256."""
    return (sum(frame_data) - 2 * frame_data[checksum_byte]) & 0xFF == 0


class _Codec:
    """Encodes one DBC message from the model's values, rolling its counter and checksum.

    A multiplexed message sends its pages in turn, one per frame. Signals are
    packed here, the way cantools packs them (tests compare the bytes), because
    ``Message.encode`` would take most of the simulator's time.
    """

    def __init__(self, message: Any) -> None:
        self.message = message
        self.name: str = message.name
        self.frame_id: int = message.frame_id
        self.is_extended = bool(message.is_extended_frame)
        self.is_fd = bool(message.is_fd)
        self.length: int = message.length
        self.cycle_us = int(message.cycle_time) * 1000
        self.count = 0
        self.counter: str | None = None
        self.checksum: str | None = None
        self.checksum_byte: int | None = None
        self._counter = (0, 0, False)  # mask, shift, big endian
        mux = next((s for s in message.signals if s.is_multiplexer), None)
        always: list[Any] = []
        for sig in message.signals:
            lowered = sig.name.lower()
            if sig is mux or sig.multiplexer_ids is not None:
                continue
            if "counter" in lowered:
                self.counter = sig.name
                self._counter = ((1 << sig.length) - 1, *self._place(sig))
            elif "checksum" in lowered:
                self.checksum, self.checksum_byte = sig.name, self._byte_of(sig)
            else:
                always.append(sig)
        self.mux: str | None = mux.name if mux is not None else None
        # per page: (multiplexer id, its bits already placed, fields)
        self.pages: list[tuple[int | None, tuple[int, int], list[_Field]]] = []
        if mux is None:
            self.pages.append((None, (0, 0), [self._field(s) for s in always]))
        else:
            shift, big = self._place(mux)
            ids = sorted({i for s in message.signals for i in (s.multiplexer_ids or ())})
            for mux_id in ids:
                paged = [s for s in message.signals
                         if s.multiplexer_ids and mux_id in s.multiplexer_ids]
                bits = (0, mux_id << shift) if big else (mux_id << shift, 0)
                self.pages.append((mux_id, bits, [self._field(s) for s in always + paged]))
        self._fast = not any(s.is_float for s in message.signals)

    def _place(self, sig: Any) -> tuple[int, bool]:
        """Where ``sig``'s lowest bit sits: in the little-endian or the big-endian integer."""
        if sig.byte_order == "little_endian":
            return int(sig.start), False
        msb = 8 * (sig.start // 8) + (7 - sig.start % 8)  # network order, as cantools
        return int(8 * self.length - msb - sig.length), True

    def _byte_of(self, sig: Any) -> int:
        aligned = sig.start % 8 == (7 if sig.byte_order == "big_endian" else 0)
        if sig.length != 8 or not aligned:
            raise DbcError(f"{self.name}.{sig.name}: a checksum must be 8 bits on a byte boundary")
        return int(sig.start // 8)

    def _field(self, sig: Any) -> _Field:
        lo = sig.minimum if sig.minimum is not None else -float("inf")
        hi = sig.maximum if sig.maximum is not None else float("inf")
        shift, big = self._place(sig)
        return _Field(sig.name, lo, hi, min(hi, max(lo, 0.0)), float(sig.offset),
                      float(sig.scale), shift, (1 << sig.length) - 1, big)

    def physical(self, values: dict[str, float]) -> dict[str, float]:
        """The next frame's signal values, clamped to the DBC's ranges (advances nothing)."""
        mux_id, _, fields = self.pages[self.count % len(self.pages)]
        data = {f.name: min(f.hi, max(f.lo, values.get(f.name, f.default))) for f in fields}
        if mux_id is not None:
            data[self.mux] = mux_id  # type: ignore[index]
        if self.counter is not None:
            data[self.counter] = self.count & self._counter[0]
        if self.checksum is not None:
            data[self.checksum] = 0
        return data

    def encode(self, values: dict[str, float]) -> bytes:
        """The next frame's payload from the model's ``values``."""
        if not self._fast:
            raw = self.message.encode(self.physical(values), strict=False)
            self.count += 1
            return self._sealed(raw)
        _, (le, be), fields = self.pages[self.count % len(self.pages)]
        for _name, lo, hi, default, offset, scale, shift, mask, big in fields:
            value = values.get(_name, default)
            if value < lo:
                value = lo
            elif value > hi:
                value = hi
            bits = (round((value - offset) / scale) & mask) << shift
            if big:
                be |= bits
            else:
                le |= bits
        mask, shift, big = self._counter
        if mask:
            if big:
                be |= (self.count & mask) << shift
            else:
                le |= (self.count & mask) << shift
        self.count += 1
        if be:
            le |= int.from_bytes(be.to_bytes(self.length, "big"), "little")
        return self._sealed(le.to_bytes(self.length, "little"))

    def _sealed(self, raw: bytes) -> bytes:
        if self.checksum_byte is None:
            return raw
        buf = bytearray(raw)
        buf[self.checksum_byte] = sum(buf) & 0xFF
        return bytes(buf)
