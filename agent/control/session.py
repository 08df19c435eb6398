"""One peer of the control socket, as the server's thread sees it: its socket, its
input and output buffers, its subscription, and the reading of its request lines.

Bounds: the input buffer holds at most one request line of ``max_request``
bytes (a longer one is refused and the peer closed); the output buffer holds
answers and stream lines up to ``out_limit`` bytes. While it is that full, the
peer's further requests wait unread in the kernel (an answer is never thrown
away) and its stream takes nothing from its subscription, whose own bound then
drops and counts (agent.control.tap).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

from agent.control import protocol
from agent.control.peers import Credentials
from agent.control.tap import Subscription

RECV_BYTES = 65536
MIN_TAKE = 512  # items: stream lines are made when about that many fit in ``out``
# (or a quarter of it is free)


class BadRequest(Exception):
    """A request line the service answers with an error (code and message)."""

    def __init__(self, request_id: Any, code: str, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    id: Any
    cmd: str
    args: dict[str, Any]


def parse_request(line: bytes) -> Request:
    """One request line, checked; BadRequest says what is wrong with it."""
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise BadRequest(None, protocol.BAD_REQUEST, f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise BadRequest(None, protocol.BAD_REQUEST,
                         f"a request is a JSON object, not {type(message).__name__}")
    request_id = message.get("id")
    if not (request_id is None or isinstance(request_id, (str, int, float))):
        raise BadRequest(None, protocol.BAD_REQUEST, "id: a string or a number")
    if message.get("v") != protocol.PROTOCOL:
        raise BadRequest(request_id, protocol.BAD_REQUEST,
                         f"v: protocol version {message.get('v')!r} is not spoken here "
                         f"(this service speaks {protocol.PROTOCOL})")
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise BadRequest(request_id, protocol.BAD_REQUEST, "cmd: the command's name is missing")
    args = message.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(request_id, protocol.BAD_ARGS,
                         f"args: a JSON object, not {type(args).__name__}")
    return Request(request_id, cmd, args)


@dataclass(eq=False)
class Peer:
    sock: socket.socket
    who: Credentials
    out_limit: int
    max_request: int
    inbuf: bytearray = field(default_factory=bytearray)
    out: bytearray = field(default_factory=bytearray)
    sub: Subscription | None = None
    sub_id: Any = None
    sent: int = 0  # stream items sent (queued to the socket)
    unfit: int = 0  # stream items lost in lines that did not fit in ``out``
    past: int = 0  # items its ended subscriptions lost
    reported: int = 0  # of ``dropped``, what its stream lines have said
    item_bytes: int = 100  # the size of one stream item in its latest line
    eof: bool = False  # it will send no more
    waiting: bool = False  # a command of it runs: its next request waits for the answer
    closing: bool = False  # close it once its output is sent (or at ``close_by``)
    close_by: float = 0.0
    events: int = 0  # what the selector watches for it

    @property
    def full(self) -> bool:
        return len(self.out) >= self.out_limit

    def receive(self) -> bool:
        """Reads what the peer sent; False at its end (or a broken connection)."""
        try:
            data = self.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.inbuf += data
        return True

    def next_line(self) -> bytes | None:
        """The next whole request line (None: none yet). Raises BadRequest(too-large)
        for a line longer than ``max_request``, read or still coming."""
        end = self.inbuf.find(b"\n", 0, self.max_request + 1)
        if end < 0:
            if len(self.inbuf) > self.max_request:
                raise BadRequest(None, protocol.TOO_LARGE,
                                 f"a request line is at most {self.max_request} bytes")
            return None
        line = bytes(self.inbuf[:end])
        del self.inbuf[:end + 1]
        return line

    def queue(self, message: dict[str, Any]) -> None:
        self.out += protocol.encode(message)

    def send(self) -> bool:
        """Sends what the socket takes now; False when the connection is broken."""
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            del self.out[:n]
        return True

    @property
    def dropped(self) -> int:
        """Stream items lost for this peer, in all: by its subscriptions (their queue
        was full) and by itself (a line did not fit in its output buffer)."""
        sub = self.sub
        return self.unfit + self.past + (sub.dropped if sub is not None else 0)

    def end_subscription(self) -> Subscription | None:
        sub = self.sub
        if sub is not None:
            self.past += sub.dropped
            self.sub = None
        return sub

    def stream(self, take: int, line_items: int) -> bool:
        """What its subscription collected (about ``take`` items at most, fewer when less
        is likely to fit), as stream lines appended to ``out``; a line that does not fit
        under ``out_limit`` is dropped and counted, and said by the next one that fits.
        False when nothing was to be done."""
        sub = self.sub
        assert sub is not None
        room = self.out_limit - len(self.out)
        if room < min(MIN_TAKE * self.item_bytes, self.out_limit // 4):
            return False  # it reads too slowly: nothing is converted for nothing
            # (meanwhile its subscription fills, then drops and counts)
        entries = sub.take(min(take, room // self.item_bytes))
        items = sub.items(entries) if entries else []
        lost = self.dropped - self.reported
        if not items and not lost:
            return False
        for start in range(0, max(len(items), 1), line_items):
            part = items[start:start + line_items]
            line = protocol.encode({"v": protocol.PROTOCOL, "id": self.sub_id,
                                    "stream": sub.topic, "items": part, "dropped": lost})
            if len(self.out) + len(line) > self.out_limit:
                self.unfit += len(part)
                continue
            self.out += line
            self.sent += len(part)
            self.reported += lost
            lost = self.dropped - self.reported
            if part:
                self.item_bytes = max(16, len(line) // len(part))
        return True

    def summary(self) -> dict[str, Any]:
        """Its line in the server's stats: who, what, and how far behind it is
        (``queued``: items its subscription holds, ``buffered``: bytes not sent yet)."""
        sub = self.sub
        return {"uid": self.who.uid, "pid": self.who.pid,
                "topic": sub.topic if sub is not None else None,
                "sent": self.sent, "dropped": self.dropped,
                "queued": sub.appended - sub.taken if sub is not None else 0,
                "buffered": len(self.out)}
