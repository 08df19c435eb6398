"""The service's side of the control socket: one thread, ``selectors``, bounded peers.

::

    server = ControlServer(path, {"status": status}, tap, hello={"version": V})
    server.start()          # listening, mode 0660, group bavard (agent.control.listen)
    ...
    server.commands = new   # at a reload
    server.close()          # peers closed, socket file removed

Each accepted peer is checked (:mod:`.peers`: root, the service's user or the
group, by SO_PEERCRED), greeted, then answered line by line (:mod:`.session`).
The service's commands run one at a time in their own thread
(:mod:`.dispatch`), so that a slow one (an OBD scan) stops no stream and no
other peer's greeting. ``subscribe`` and ``unsubscribe`` are the server's own;
their stream lines are written at most every :data:`FLUSH_SECONDS`, batching
what the tap (:mod:`.tap`) collected.

Bounds: at most ``max_clients`` peers (the next gets a ``busy`` error line),
request lines of ``max_request`` bytes (a longer one: ``too-large``, then the
peer is closed), ``out_limit`` bytes waiting for each peer (a stream line that
does not fit is dropped and counted; a full peer's requests wait unread). A
bad line gets an error answer and disturbs nothing else; a handler's exception
is an error answer (``internal`` ones logged with their traceback).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.control import listen, protocol
from agent.control.dispatch import Command, Worker, answer_line
from agent.control.peers import Access, peer_credentials
from agent.control.session import BadRequest, Peer, Request, parse_request
from agent.control.tap import Tap
from agent.errors import ControlError

log = logging.getLogger(__name__)

__all__ = ["Command", "ControlServer"]

FLUSH_SECONDS = 0.1  # stream lines are written at most this often
TAKE_ITEMS = 4_096  # items taken from one subscription per flush, at most (the tap drops
# the rest): a bound on this thread's work, which competes with the pipeline's
LINE_ITEMS = 1_000  # items per stream line, at most
CLOSE_SECONDS = 2.0  # a peer being closed has this long to read its last line
ACCEPTS = 64  # connections accepted per wake-up, at most
WARN_EVERY = 1.0  # seconds between two warnings of refused peers
JOIN_SECONDS = 5.0
SUBSCRIBE_ARGS = ("topic", "channel", "signals")
PEER_UID = "_uid"  # set in the args of a handler marked ``peer_uid``: the asking peer's uid


class ControlServer:
    def __init__(self, path: Path, commands: Mapping[str, Command], tap: Tap, *,
                 hello: dict[str, Any], group: str | None = "bavard", max_clients: int = 8,
                 max_request: int = protocol.MAX_REQUEST, out_limit: int = 1 << 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        #: name -> handler; replaced whole at a reload (read at each request)
        self.commands: Mapping[str, Command] = commands
        self.tap = tap
        self.hello = {"service": "bavard", "protocol": protocol.PROTOCOL, "pid": os.getpid(),
                      **hello}
        self.group = group
        self.max_clients = max_clients
        self.max_request = max_request
        self.out_limit = out_limit
        self.clock = clock
        self.refused = 0  # peers refused for their uid/gid
        self.busy = 0  # peers turned away, max_clients being connected
        self._access = Access(group)
        self._peers: dict[int, Peer] = {}  # by file descriptor
        self._gone_dropped = 0  # stream items lost by peers now closed
        self._builtin = {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: Worker | None = None
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._inode = 0
        self._next_flush = 0.0
        self._warned = -WARN_EVERY
        self._unwarned = 0

    # --- life cycle

    def start(self) -> None:
        """Listen on ``path`` (a stale socket file there is replaced; a live service
        there is a ControlError) and start the server's threads."""
        self._listener, self._inode = listen.listen(self.path, self.group,
                                                    max(self.max_clients, 16))
        self._wake = socket.socketpair()
        self._wake[0].setblocking(False)
        self._wake[1].setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, "accept")
        selector.register(self._wake[0], selectors.EVENT_READ, "wake")
        self._selector = selector
        self._worker = Worker(self._poke)
        self._worker.start()
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._thread.start()
        log.info("control socket listening on %s", self.path)

    def close(self) -> None:
        """Stop the threads, close every peer, remove the socket file. Safe to call again."""
        thread, worker = self._thread, self._worker
        if thread is None or worker is None:
            return
        self._stop.set()
        self._poke()
        thread.join(JOIN_SECONDS)
        if not worker.stop(JOIN_SECONDS) or thread.is_alive():
            log.warning("control socket: a thread did not end within %.0f s (a command "
                        "stuck?)", JOIN_SECONDS)
        self._thread = self._worker = None
        listen.remove(self.path, self._inode)

    def stats(self) -> dict[str, Any]:
        peers = list(self._peers.values())
        return {"clients": len(peers), "refused": self.refused, "busy": self.busy,
                "dropped": self._gone_dropped + sum(p.dropped for p in peers),
                "peers": [p.summary() for p in peers]}

    def _poke(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"x")

    # --- the thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:
                    log.exception("control socket: unexpected error (serving on)")
                    self._stop.wait(FLUSH_SECONDS)
        finally:
            for peer in list(self._peers.values()):
                self._drop(peer)
            for sock in (self._listener, *(self._wake or ())):
                if sock is not None:
                    sock.close()
            if self._selector is not None:
                self._selector.close()

    def _step(self) -> None:
        streaming = any(p.sub is not None or p.closing for p in self._peers.values())
        self._poll(max(0.0, self._next_flush - self.clock()) if streaming else None)
        now = self.clock()
        if streaming and now >= self._next_flush:
            self._next_flush = now + FLUSH_SECONDS
            for peer in list(self._peers.values()):
                if peer.closing:
                    if now >= peer.close_by:
                        self._drop(peer)
                elif peer.sub is not None and peer.stream(TAKE_ITEMS, LINE_ITEMS):
                    # (a peer too slow to take more costs one comparison here)
                    self._flush(peer)
                    self._poll(0.0)  # a request waits for one peer's stream at most

    def _poll(self, timeout: float | None) -> None:
        """Accepts, reads, answers and writes what is ready within ``timeout``."""
        assert self._selector is not None and self._worker is not None
        for key, mask in self._selector.select(timeout):
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(OSError):
                    key.fileobj.recv(4096)  # type: ignore[union-attr]
                for peer, line in self._worker.answers():
                    if peer.sock.fileno() >= 0:  # not closed meanwhile
                        peer.out += line
                        peer.waiting = False
                        self._serve(peer, 0)
            elif key.data.sock.fileno() >= 0:  # not closed by an earlier event of this poll
                self._serve(key.data, mask)

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(ACCEPTS):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control socket: accept failed: %s", exc)
                return
            try:
                who = peer_credentials(sock)
            except OSError:
                sock.close()
                continue
            reason = self._access.refusal(who)
            if reason is not None:
                self.refused += 1
                self._turn_away(sock, protocol.REFUSED, reason)
                self._warn_refused(reason)
                continue
            if len(self._peers) >= self.max_clients:
                self.busy += 1
                self._turn_away(sock, protocol.BUSY,
                                f"the service is busy: {self.max_clients} clients are "
                                "connected, the most it serves; try again later")
                continue
            sock.setblocking(False)
            peer = Peer(sock, who, self.out_limit, self.max_request)
            self._peers[sock.fileno()] = peer
            peer.queue({"v": protocol.PROTOCOL, "hello": self.hello})
            self._flush(peer)

    def _turn_away(self, sock: socket.socket, code: str, message: str) -> None:
        """One error line (it fits in an empty socket buffer), then the end."""
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(protocol.encode(protocol.error(None, code, message)))
        sock.close()

    def _warn_refused(self, reason: str) -> None:
        now = self.clock()
        if now - self._warned < WARN_EVERY:
            self._unwarned += 1
            return
        more = f" ({self._unwarned} more refused since the last warning)" if self._unwarned else ""
        log.warning("control socket %s: refused a peer: %s%s", self.path, reason, more)
        self._warned, self._unwarned = now, 0

    def _serve(self, peer: Peer, mask: int) -> None:
        ended = mask & selectors.EVENT_READ and not peer.receive()
        if ended and not peer.inbuf and peer.sub is None and not peer.out and not peer.waiting:
            self._drop(peer)
            return
        for _ in range(16):  # lines left waiting while its output was full, then sent
            self._answer_lines(peer)
            if not self._flush(peer):
                return
            if peer.full or peer.closing or peer.waiting or b"\n" not in peer.inbuf:
                break

    def _answer_lines(self, peer: Peer) -> None:
        while not (peer.full or peer.closing or peer.waiting):
            try:
                line = peer.next_line()
            except BadRequest as bad:
                peer.queue(protocol.error(bad.request_id, bad.code, bad.message))
                peer.closing, peer.close_by = True, self.clock() + CLOSE_SECONDS
                return
            if line is None:
                return
            if line.strip():
                self._request(peer, line)

    def _request(self, peer: Peer, line: bytes) -> None:
        """Answers one request line, or hands its command to the worker."""
        try:
            request = parse_request(line)
        except BadRequest as bad:
            peer.queue(protocol.error(bad.request_id, bad.code, bad.message))
            return
        rid, cmd = request.id, request.cmd
        builtin = self._builtin.get(cmd)
        if builtin is not None:
            peer.out += answer_line(rid, cmd, lambda: builtin(peer, request))
            return
        handler = self.commands.get(cmd)
        if handler is None:
            names = ", ".join(sorted({*self._builtin, *self.commands}))
            peer.queue(protocol.error(rid, protocol.UNKNOWN_COMMAND,
                                      f"unknown command {cmd!r} (commands: {names})"))
            return
        assert self._worker is not None
        args = request.args
        if getattr(handler, "peer_uid", False):  # it records who asked (a consent change)
            args = {**args, PEER_UID: peer.who.uid}  # (whatever the peer put there)
        peer.waiting = True
        self._worker.submit(peer, rid, cmd, handler, args)

    def _subscribe(self, peer: Peer, request: Request) -> dict[str, Any]:
        args = request.args
        if peer.sub is not None:
            raise ControlError(f"this connection is subscribed to {peer.sub.topic} already "
                               "(one subscription per connection: unsubscribe first)",
                               protocol.BAD_ARGS)
        topic, channel, signals = (args.get(k) for k in SUBSCRIBE_ARGS)
        if not isinstance(topic, str):
            raise ControlError("topic: a string", protocol.BAD_ARGS)
        for name, value in (("channel", channel), ("signals", signals)):
            if not (value is None or isinstance(value, str)):
                raise ControlError(f"{name}: a string or nothing", protocol.BAD_ARGS)
        unknown = sorted(set(args) - set(SUBSCRIBE_ARGS))
        if unknown:
            raise ControlError(f"unknown argument {unknown[0]!r} (subscribe takes topic, "
                               "channel, signals)", protocol.BAD_ARGS)
        peer.sub = self.tap.subscribe(topic, channel, signals)
        peer.sub_id = request.id
        peer.reported = peer.dropped
        if not any(p.sub is not None for p in self._peers.values() if p is not peer):
            self._next_flush = self.clock() + FLUSH_SECONDS
        return {"topic": topic, "channel": channel, "signals": signals}

    def _unsubscribe(self, peer: Peer, request: Request) -> dict[str, Any]:
        sub = peer.end_subscription()
        if sub is not None:
            self.tap.unsubscribe(sub)
        peer.reported = peer.dropped
        return {"topic": sub.topic if sub is not None else None, "sent": peer.sent,
                "dropped": peer.dropped}

    def _flush(self, peer: Peer) -> bool:
        """Sends what the socket takes, then watches the peer for what it needs next;
        False when the peer was closed."""
        if not peer.send() or (peer.closing and not peer.out):
            self._drop(peer)
            return False
        if (peer.eof and not peer.out and peer.sub is None and not peer.waiting
                and b"\n" not in peer.inbuf):
            self._drop(peer)  # it said all it had to and has its answers
            return False
        want = selectors.EVENT_WRITE if peer.out else 0
        if not (peer.eof or peer.closing or peer.full or peer.waiting):
            want |= selectors.EVENT_READ
        if want != peer.events:
            assert self._selector is not None
            if peer.events and want:
                self._selector.modify(peer.sock, want, peer)
            elif want:
                self._selector.register(peer.sock, want, peer)
            else:
                self._selector.unregister(peer.sock)
            peer.events = want
        return True

    def _drop(self, peer: Peer) -> None:
        sub = peer.end_subscription()
        if sub is not None:
            self.tap.unsubscribe(sub)
        self._gone_dropped += peer.dropped
        if peer.events and self._selector is not None:
            self._selector.unregister(peer.sock)
            peer.events = 0
        self._peers.pop(peer.sock.fileno(), None)
        peer.sock.close()
