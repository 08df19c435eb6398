"""A tiny scriptable MQTT 5 receiver on 127.0.0.1: answers PUBACKs with chosen reason codes.

Mosquitto cannot be made to send most PUBACK failure codes (0x80, 0x83, 0x97,
0x99...), so the classification of each code is tested against this peer,
which speaks just enough MQTT 5 for one publisher: CONNECT -> CONNACK (reason
``connack``), PUBLISH QoS 1 -> PUBACK with the next scripted reason code
(0x00 once the script is empty), PINGREQ -> PINGRESP, DISCONNECT -> close.
Every PUBLISH is recorded as ``(topic, payload)``, every CONNECT's client id
in ``client_ids``. MQTT 3.1.1 clients are served too (a 3.1.1 PUBACK is the
same packet without the reason code, which they ignore).

Two ways to misbehave: ``connack=None`` never answers a CONNECT (a broker that
accepts the TCP connection and then says nothing); ``stall=True`` stops reading
after the CONNACK, with a small receive buffer, so that a big PUBLISH sticks in
the client's socket (a link that stopped carrying anything).
"""

from __future__ import annotations

import socket
import threading
from collections import deque


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    first = _read_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        byte = _read_exact(sock, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, _read_exact(sock, length)


def _varint_len(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


class MqttPeer:
    def __init__(self, connack: int | None = 0x00, stall: bool = False) -> None:
        self.connack = connack
        self.stall = stall
        self.published: list[tuple[str, bytes]] = []
        self.client_ids: list[str] = []  # one per CONNECT, in order
        self._codes: deque[int] = deque()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="mqtt-peer")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def script(self, *codes: int) -> None:
        self._codes.extend(codes)

    def __enter__(self) -> MqttPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(5.0)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        if self.stall:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with conn:
            while not self._stopping.is_set():
                try:
                    first, body = _read_packet(conn)
                except TimeoutError:
                    continue
                except (EOFError, OSError):
                    return
                kind = first >> 4
                if kind == 1:  # CONNECT
                    name_len = int.from_bytes(body[:2], "big")
                    pos = 2 + name_len + 4  # protocol name, level, flags, keep alive
                    if body[2 + name_len] == 5:
                        props_len, pos = _varint_len(body, pos)
                        pos += props_len
                    id_len = int.from_bytes(body[pos:pos + 2], "big")
                    self.client_ids.append(body[pos + 2:pos + 2 + id_len].decode())
                    if self.connack is None:
                        continue
                    conn.sendall(bytes([0x20, 3, 0, self.connack, 0]))
                    if self.connack >= 0x80:
                        return
                    if self.stall:
                        self._stopping.wait()
                        return
                elif kind == 3:  # PUBLISH, QoS 1 expected
                    topic_len = int.from_bytes(body[:2], "big")
                    topic = body[2:2 + topic_len].decode()
                    pos = 2 + topic_len
                    packet_id = body[pos:pos + 2]
                    props_len, pos = _varint_len(body, pos + 2)
                    self.published.append((topic, body[pos + props_len:]))
                    code = self._codes.popleft() if self._codes else 0
                    conn.sendall(bytes([0x40, 4]) + packet_id + bytes([code, 0]))
                elif kind == 12:  # PINGREQ
                    conn.sendall(bytes([0xD0, 0]))
                elif kind == 14:  # DISCONNECT
                    return
