"""MQTT transport: one QoS 1 PUBLISH per batch, acknowledged by its PUBACK (paho-mqtt 2.x).

``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; user name and password, if
any, from the URL (``mqtts://user:secret@host``). The topic is
``upload.topic`` with ``{vehicle}`` replaced by the pseudonymous vehicle id.
MQTT 5 by default: the batch id travels as the user property ``batch-id``
(the receiver drops a repeat); with ``mqtt_version = 311`` it is only in the
batch's envelope. The client id is ``upload.client_id`` or ``bavard-<vehicle
id>`` (39 characters: fine for Mosquitto, EMQX, HiveMQ and AWS IoT, over the
23 that a strict MQTT 3.1.1 broker must accept).

Connection: opened on the first send (``timeout`` for the TCP/TLS connect,
then again for the CONNACK), clean start, served by paho's background thread
(``loop_start``) and reused across sends. Paho's own reconnect is off
(``reconnect_on_failure=False``): after any failure the client object is
thrown away whole and the next send builds a new one, so no stale in-flight
message is re-sent behind the uploader's back and no half-known state
survives. (If the PUBACK was lost but the broker got the batch, the retry is
a duplicate, which receivers drop by batch id.)

Classification of one attempt (the uploader retries, never the transport):

- PUBACK 0x00 success: delivered; what the broker does next is its business.
- PUBACK 0x10 "no matching subscribers": transient, the connection kept. The
  broker took the message but nobody can have it: no subscription matches
  the topic, not even a persistent session away from the broker. It is what
  a broker answers after a crash that lost its sessions, until the receiver
  has subscribed again; taken as delivered, the batch would be deleted and
  lost. So a batch leaves the store only once a subscriber can have it; the
  uploader backs off and sends it again (a repeat the receiver drops by id).
  docs/upload.md says what a backend must do (MQTT 3.1.1 has no reason code:
  there a PUBACK with no subscriber is a loss the agent cannot see).
- PUBACK with 0x80 unspecified error, 0x83 implementation specific error,
  0x99 payload format invalid: :class:`RefusedUploadError`. These judge the
  message itself; the same bytes will be refused again. (0x95 "packet too
  large" is no PUBACK code: a broker sends it in a DISCONNECT, and paho
  treats a PUBACK code outside the specification's list as a protocol error,
  which ends the connection: transient, like any lost connection.)
- PUBACK with 0x87 not authorised or 0x90 topic name invalid: transient,
  logged at ERROR. They judge this client's rights or the ``upload.topic``,
  which an operator fixes and reloads; dead-lettering would throw away every
  batch until then.
- PUBACK with 0x97 quota exceeded or 0x91 packet identifier in use, and any
  code this table does not know: transient (a quota passes; an identifier
  clash means the session is confused, so it is dropped).
- CONNACK refused (bad user name or password, not authorised, banned,
  server busy...): transient, logged at ERROR with the reason, for the same
  reason as 0x87.
- Refused or failed connects, DNS, TLS (see :func:`network_error`), the
  connection lost before the PUBACK, no CONNACK or PUBACK within
  ``timeout``: transient, and the connection is dropped.
- A payload over ``max_batch_bytes``, or a PUBLISH over the Maximum Packet
  Size of the broker's MQTT 5 CONNACK: refused without sending (the broker
  would drop the connection, again and again).

Threads: ``send`` runs on the uploader's thread and waits on a condition that
paho's callbacks (its network thread) and :meth:`MqttTransport.close` (any
thread) notify, so ``close`` wakes a waiting send at once; a send still
inside the blocking TCP/TLS connect ends within ``timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.batch.wire import BATCH_ID_PROPERTY
from agent.errors import ConfigError, RefusedUploadError, TransientUploadError
from agent.upload.tls import client_context
from agent.upload.transport import (
    TransportConfig,
    check_size,
    network_error,
    split_url,
)

log = logging.getLogger(__name__)
#: paho's own messages, all at DEBUG: its "errors" include a routine one at every
#: disconnect, and every real failure reaches the uploader as our exception anyway.
paho_log = logging.getLogger(f"{__name__}.paho")

#: PUBACK reason codes that refuse the message itself: never retry it.
REFUSED_CODES = frozenset({0x80, 0x83, 0x99})
#: PUBACK reason codes that refuse this client or topic: retry, but say so loudly.
CLIENT_REFUSED_CODES = frozenset({0x87, 0x90})
#: PUBACK "no matching subscribers": nobody can receive the batch yet; retry.
NO_SUBSCRIBERS = 0x10
KEEPALIVE = 60  # seconds between PINGREQs on an idle connection
DISCONNECT_GRACE = 0.5  # seconds for our DISCONNECT to leave before the socket is cut


def _paho_log(client: mqtt.Client, userdata: object, level: int, message: str) -> None:
    paho_log.debug("%s", message)


def _publish_size(topic: str, batch_id: str, payload: bytes) -> int:
    """The size of our MQTT 5 PUBLISH packet, an upper bound (fixed header at its longest)."""
    prop = 1 + 2 + len(BATCH_ID_PROPERTY.encode()) + 2 + len(batch_id.encode())
    return 5 + 2 + len(topic.encode()) + 2 + 4 + prop + len(payload)


@dataclass(eq=False)
class _Session:
    """One paho client and its one connection; thrown away after any failure."""

    client: mqtt.Client
    connack: ReasonCode | None = None
    max_packet: int | None = None  # the broker's Maximum Packet Size (MQTT 5 CONNACK)
    lost: str | None = None  # why the connection ended, once it has
    acks: dict[int, ReasonCode] = field(default_factory=dict)  # PUBACKs by message id
    retired: bool = False  # close() or a failure dropped it
    ended: threading.Event = field(default_factory=threading.Event)  # on_disconnect came
    teardown_lock: threading.Lock = field(default_factory=threading.Lock)

    def teardown(self) -> None:
        """Disconnect and stop the network thread; safe from any thread but paho's, twice.

        Paho's thread ends only once everything queued is written: behind a PUBLISH that
        a stalled peer no longer reads, the DISCONNECT never is, and ``loop_stop`` would
        wait for the keep-alive (a minute or more). So the DISCONNECT gets
        ``DISCONNECT_GRACE``, then the socket is shut down under paho's feet, and closed
        once the thread is gone (it may stop before it sees the shutdown).
        """
        with self.teardown_lock:
            if self.client.is_connected():
                self.client.disconnect()
                self.ended.wait(DISCONNECT_GRACE)
            sock = self.client.socket()
            if isinstance(sock, socket.socket):  # an SSLSocket too
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
            self.client.loop_stop()
            sock = self.client.socket()
            if sock is not None:
                sock.close()


class MqttTransport:
    """Publish batches to ``config.url`` (``mqtts://`` or ``mqtt://``) at QoS 1."""

    def __init__(self, config: TransportConfig) -> None:
        parts, host, port = split_url(config.url, ("mqtt", "mqtts"))
        if config.mqtt_version not in (5, 311):
            raise ConfigError(f"upload.mqtt_version: {config.mqtt_version} is not 5 or 311")
        try:
            topic = config.topic.format(vehicle="v")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"upload.topic: {config.topic!r} may only use {{vehicle}}: "
                              f"{exc!r}") from exc
        if not topic or "+" in topic or "#" in topic:
            raise ConfigError(f"upload.topic: {config.topic!r} is not a topic to publish to "
                              f"(empty, or a + or # wildcard)")
        self.config = config
        self._host = host
        self._port = port or (8883 if parts.scheme == "mqtts" else 1883)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._v5 = config.mqtt_version == 5
        self._endpoint = f"{parts.scheme}://{self._host}:{self._port}"
        self._context = client_context(config) if parts.scheme == "mqtts" else None
        self._cond = threading.Condition()
        self._session: _Session | None = None
        self._generation = 0  # bumped by close(): a send that sees it change was closed

    def __repr__(self) -> str:
        return f"MqttTransport({self._endpoint!r})"

    # -- the uploader's side -------------------------------------------------------------

    def send(self, batch_id: str, vehicle_id: str, payload: bytes) -> None:
        """Publish ``payload`` at QoS 1 and wait for its PUBACK (see the module docstring)."""
        check_size(self.config, self._endpoint, batch_id, payload)
        topic = self.config.topic.format(vehicle=vehicle_id)
        with self._cond:
            generation = self._generation
        session = self._connected(generation, vehicle_id)
        properties: Properties | None = None
        if self._v5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [(BATCH_ID_PROPERTY, batch_id)]
            size = _publish_size(topic, batch_id, payload)
            if session.max_packet is not None and size > session.max_packet:
                raise RefusedUploadError(
                    f"{self._endpoint}: batch {batch_id} makes a {size}-byte PUBLISH, over the "
                    f"broker's Maximum Packet Size ({session.max_packet}); not sent")
        info = session.client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._retire(session)
            raise TransientUploadError(f"{self._endpoint}: cannot publish batch {batch_id}: "
                                       f"{mqtt.error_string(info.rc)}")
        self._wait(session, generation, lambda: info.mid in session.acks,
                   f"no PUBACK for batch {batch_id}")
        with self._cond:
            code = session.acks.pop(info.mid)
        self._classify(session, batch_id, topic, code)

    def close(self) -> None:
        """Drop the connection and wake a waiting send; idempotent, from any thread."""
        with self._cond:
            self._generation += 1
            session, self._session = self._session, None
            if session is not None:
                session.retired = True
            self._cond.notify_all()
        if session is not None:
            session.teardown()

    # -- connection ------------------------------------------------------------------------

    def _connected(self, generation: int, vehicle_id: str) -> _Session:
        with self._cond:
            session = self._session
            if session is not None and session.lost is None:
                return session
        if session is not None:
            self._retire(session)
        session = _Session(self._client(vehicle_id))
        with self._cond:
            if generation != self._generation:
                raise TransientUploadError(f"{self._endpoint}: transport closed")
            self._session = session
        # a weak reference: a session <-> client cycle kept each failed attempt's socket
        # and paho's socket pair open until a garbage collection came by
        session.client.user_data_set(weakref.proxy(session))
        try:
            session.client.connect(self._host, self._port, keepalive=KEEPALIVE,
                                   clean_start=True if self._v5 else
                                   mqtt.MQTT_CLEAN_START_FIRST_ONLY)
        except OSError as exc:
            self._retire(session)
            raise network_error(exc, self._endpoint, self.config.timeout) from exc
        session.client.loop_start()
        self._wait(session, generation, lambda: session.connack is not None, "no CONNACK")
        assert session.connack is not None
        if session.connack.is_failure:
            self._retire(session)
            message = (f"{self._endpoint}: the broker refused the connection: "
                       f"{session.connack.getName()} (0x{session.connack.value:02x}); check "
                       f"the credentials in upload.url, upload.cert_file/upload.key_file and "
                       f"the broker's access rules")
            log.error("%s", message)
            raise TransientUploadError(message)
        log.debug("connected to %s", self._endpoint)
        return session

    def _client(self, vehicle_id: str) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id or f"bavard-{vehicle_id}",
            clean_session=None if self._v5 else True,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = self.config.timeout
        client.on_log = _paho_log
        if self._context is not None:
            client.tls_set_context(self._context)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _wait(self, session: _Session, generation: int, done: Callable[[], bool],
              what: str) -> None:
        """Wait until ``done()``; on close, loss or timeout drop the session and raise."""
        deadline = time.monotonic() + self.config.timeout
        failure: str | None = None
        with self._cond:
            while not done():
                if generation != self._generation:
                    failure = f"transport closed ({what})"
                elif session.lost is not None:
                    failure = session.lost
                elif time.monotonic() >= deadline:
                    failure = f"{what} within {self.config.timeout:g} s"
                if failure is not None:
                    break
                self._cond.wait(deadline - time.monotonic())
        if failure is None:
            return
        self._retire(session)
        log.debug("%s: %s", self._endpoint, failure)
        raise TransientUploadError(f"{self._endpoint}: {failure}")

    def _retire(self, session: _Session) -> None:
        with self._cond:
            session.retired = True
            if self._session is session:
                self._session = None
        session.teardown()

    def _classify(self, session: _Session, batch_id: str, topic: str, code: ReasonCode) -> None:
        what = (f"{self._endpoint}: PUBACK {code.getName()} (0x{code.value:02x}) for batch "
                f"{batch_id} on {topic!r}")
        if code.value == NO_SUBSCRIBERS:  # the connection is fine: keep it
            raise TransientUploadError(f"{what}: no subscriber can receive it yet (is the "
                                       f"receiver subscribed, with a persistent session?)")
        if not code.is_failure:
            log.debug("batch %s: PUBACK %s on %s", batch_id, code.getName(), topic)
            return
        if code.value in REFUSED_CODES:
            raise RefusedUploadError(what)
        if code.value in CLIENT_REFUSED_CODES:
            message = f"{what}: check upload.topic and the broker's access rules"
            log.error("%s", message)
            raise TransientUploadError(message)
        self._retire(session)
        raise TransientUploadError(what)

    # -- paho's network thread ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, session: _Session, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        with self._cond:
            session.connack = reason
            if properties is not None and hasattr(properties, "MaximumPacketSize"):
                session.max_packet = int(properties.MaximumPacketSize)
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, session: _Session,
                       flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        with self._cond:
            if session.lost is None:
                session.lost = f"connection lost: {reason.getName()}"
            session.ended.set()
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, session: _Session, mid: int,
                    reason: ReasonCode, properties: Properties) -> None:
        with self._cond:
            session.acks[mid] = reason
            self._cond.notify_all()
