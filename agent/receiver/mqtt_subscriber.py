"""The MQTT receiver: a subscriber that acknowledges a batch only once it is committed.

Python API::

    from agent.receiver.core import Receiver
    from agent.receiver.mqtt_subscriber import subscribe

    receiver = Receiver.open("received")
    sub = subscribe(receiver, "mqtt://127.0.0.1:1883")   # mqtts://... with ca_file etc.
    # or one of N instances: subscribe(..., share="lake", client_id="bavard-receiver-2")
    sub.filter                                           # what it subscribes to
    # retiring that instance for good (instead of start):
    MqttReceiver(receiver, MqttSettings(url, share="lake", client_id=...)).leave()
    sub.wait_subscribed(10)                              # True once the broker granted QoS 1
    sub.close()                                          # disconnect; unacked stay queued
    receiver.close()

What the agent publishes (``agent.upload.mqtt``): one batch per message, QoS 1,
on ``bavard/{vehicle}/batch``; with MQTT 5 the batch id also travels as the
user property ``batch-id`` (``agent.batch.wire.BATCH_ID_PROPERTY``),
which must then equal the envelope's; with MQTT 3.1.1 the envelope is the only id.

Decisions:

- *Persistent session*: a fixed client id (``bavard-receiver`` unless told
  otherwise, ``bavard-receiver-GROUP-HOSTNAME`` with ``share``: two receivers
  sharing one id would throw each other off), MQTT 5
  ``clean_start=False`` on every connection (paho's default cleans the first
  one) and a session expiry interval (default 7 days), so the broker queues the
  batches published while the receiver is away and delivers them when it is back.
- *Acknowledge after commit*: paho's ``manual_ack=True``; the PUBACK for a
  message is sent (``client.ack(mid, qos)``) only once its batch is committed,
  or known as a duplicate, or refused as invalid (counted: a bad payload would
  be just as bad the next time, and must not loop). Until then the broker keeps
  it, so a receiver killed mid-batch gets it again on the next session, and
  the database's dedupe makes the redelivery harmless. :meth:`MqttReceiver.close`
  waits for the message in hand, so its PUBACK goes out before the DISCONNECT.
- *Storage failure*: the message is not acknowledged, and the connection is
  dropped (``Client.socket()`` shut down) so that paho reconnects and the broker
  redelivers it; the reconnect delay backs off up to ``MAX_RECONNECT_DELAY``.
- *Reconnects*: paho's network thread (``loop_start``) reconnects after any
  lost connection, a broker restart included, and also keeps trying when the
  broker is not there at start-up (every 1 s, backing off to every 10 s), for
  as long as the receiver runs: a broker that starts later or comes back is
  what a receiver service expects. The subscription is renewed on each connect.
- *Saying why*: paho retries without a word, so every failed attempt is
  caught where paho makes it (:meth:`_Client.reconnect`) and logged at WARNING
  with the broker's URL (without its password) and the reason: connection
  refused, a host name that does not resolve, a TLS failure (certificate
  verification, handshake), no answer; the same reason again at most once a
  minute, and once connected, after how many failed attempts. A broker that
  refuses the CONNECT (credentials, not authorised) is logged at ERROR, as
  rarely.
- Plain ``mqtt://`` to a host that is not loopback works but is logged as a
  warning: the batches would cross the network in the clear.

Scaling out (``share``): N instances split the batches through an MQTT 5 shared
subscription; :mod:`agent.receiver.mqtt_share` says what Mosquitto does when one
dies and what the operator must do (a distinct, stable client id per instance, a
supervisor that restarts it with that id; :meth:`MqttReceiver.leave` to retire one).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.batch.wire import BATCH_ID_PROPERTY
from agent.errors import ReceiverError
from agent.receiver.core import Receiver
from agent.receiver.listen import is_loopback
from agent.receiver.mqtt_share import (  # noqa: F401  (DEFAULT_CLIENT_ID: for importers)
    DEFAULT_CLIENT_ID,
    default_client_id,
    subscription_filter,
)

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "bavard/+/batch"
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600  # seconds the broker keeps the session while away
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # as the HTTP receiver's
KEEPALIVE = 30
MIN_RECONNECT_DELAY, MAX_RECONNECT_DELAY = 1, 10  # seconds (paho wants ints)
REPEAT_LOG = 60.0  # seconds: the same connection failure is logged again at most this often
LEAVE_QUIET = 2.0  # seconds without a message after which a leaving session is empty
LEAVE_TIMEOUT = 120.0  # seconds leave() may take at most


@dataclass(frozen=True)
class MqttSettings:
    """How to reach the broker and what to subscribe to."""

    url: str  # mqtt://host[:1883] or mqtts://host[:8883]; user:password@ allowed
    topic: str = DEFAULT_TOPIC
    client_id: str | None = None  # None: default_client_id(share)
    share: str | None = None  # a shared subscription's group: $share/{share}/{topic}
    ca_file: Path | None = None  # mqtts: the broker's CA; None = the system's
    cert_file: Path | None = None  # client certificate (mTLS)
    key_file: Path | None = None
    session_expiry: int = DEFAULT_SESSION_EXPIRY
    max_bytes: int = DEFAULT_MAX_BYTES  # a bigger message is refused unread (counted, acked)


class _Client(mqtt.Client):
    """paho's client, telling :attr:`failed` why each connection attempt failed (paho's
    own loop only reports that one did, through ``on_connect_fail``)."""

    def __init__(self, failed: Callable[[OSError], None], **kwargs: Any) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, **kwargs)
        self.failed = failed

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.failed(exc)
            raise


class MqttReceiver:
    """A running subscriber (see :func:`subscribe`)."""

    def __init__(self, receiver: Receiver, settings: MqttSettings) -> None:
        self.receiver = receiver
        self.settings = settings
        parts = urlsplit(settings.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ReceiverError(f"--mqtt {settings.url!r}: expected mqtt://HOST[:PORT] or "
                                f"mqtts://HOST[:PORT]")
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname
        try:
            self.port = parts.port or (8883 if self.tls else 1883)
        except ValueError:
            raise ReceiverError(f"--mqtt {settings.url!r}: bad port") from None
        self.transport = parts.scheme
        host = f"[{self.host}]" if ":" in self.host else self.host
        #: the broker's URL for messages: no user name or password
        self.where = f"{parts.scheme}://{host}:{self.port}"
        #: what is subscribed to: the topic, or $share/GROUP/topic
        self.filter = subscription_filter(settings.topic, settings.share)
        self.client_id = settings.client_id or default_client_id(settings.share)
        self._subscribed = threading.Event()
        self._closing = False
        # held while a message is handled: close() waits for its PUBACK to be queued
        self._handling = threading.Lock()
        self._trouble: str | None = None  # why the last attempt failed, until one succeeds
        self._trouble_logged = 0.0
        self._failures = 0
        self._leaving = False  # leave(): unsubscribe instead of subscribing
        self._left = threading.Event()  # leave(): unsubscribed on the current connection
        self._last_message = 0.0  # time.monotonic() of the last message handled
        self._handled = 0
        client = _Client(self._connect_failed, client_id=self.client_id,
                         protocol=mqtt.MQTTv5, manual_ack=True)
        if parts.username is not None:
            client.username_pw_set(unquote(parts.username),
                                   unquote(parts.password) if parts.password else None)
        if self.tls:
            try:
                client.tls_set(ca_certs=_opt(settings.ca_file), certfile=_opt(settings.cert_file),
                               keyfile=_opt(settings.key_file))
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ReceiverError(f"--mqtt {self.where}: TLS setup failed: {exc}") from None
        elif not _all_loopback(self.host):
            log.warning("plain MQTT to %s: batches cross the network unencrypted "
                        "(use mqtts://)", self.host)
        client.reconnect_delay_set(MIN_RECONNECT_DELAY, MAX_RECONNECT_DELAY)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def start(self) -> MqttReceiver:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry
        # connect_async + loop_start: paho keeps trying while the broker is not there yet
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        log.info("%s %s on %s as %s", "leaving" if self._leaving else "subscribing to",
                 self.filter, self.where, self.client_id)
        return self

    def leave(self, quiet: float = LEAVE_QUIET, timeout: float = LEAVE_TIMEOUT) -> int:
        """Retire this instance for good, instead of :meth:`start`: resume its session,
        unsubscribe (the broker stops giving it a share, see :mod:`.mqtt_share`), store
        the batches the session still holds until none has come for ``quiet`` s, then
        end the session. Returns how many batches were handled. ReceiverError, the
        session kept, when that did not happen within ``timeout`` s."""
        self._leaving = True
        self.start()
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            with self._handling:
                if self._left.is_set() and now - self._last_message >= quiet:
                    self._closing = True  # nothing is coming: end the session
                    break
            if now >= deadline:
                self.close()
                raise ReceiverError(f"--mqtt {self.where}: could not leave {self.filter} as "
                                    f"{self.client_id} within {timeout:g} s (see the log); "
                                    f"the session is kept")
            time.sleep(0.05)
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        ended = self.client.disconnect(properties=props) == MQTTErrorCode.MQTT_ERR_SUCCESS
        self.client.loop_stop()
        if ended:
            log.info("left %s: %d batches handled, session %s ended", self.filter,
                     self._handled, self.client_id)
        else:  # it left the group and held nothing: it only lingers until it expires
            log.warning("left %s: %d batches handled, but the connection was lost before "
                        "the session %s could be ended", self.filter, self._handled,
                        self.client_id)
        return self._handled

    def wait_subscribed(self, timeout: float) -> bool:
        """True once connected and the subscription granted (within ``timeout`` s)."""
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        """Disconnect and stop the network thread (after the message in hand). Idempotent."""
        with self._handling:
            if self._closing:
                return
            self._closing = True
        self.client.disconnect()  # queued after the last PUBACK
        self.client.loop_stop()

    def __enter__(self) -> MqttReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paho callbacks (in paho's network thread) ------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._report(f"the broker refused the connection: {reason} (check the user "
                         f"name and password in the URL, --cert/--key, the broker's access "
                         f"rules)", logging.ERROR)
            return
        if self._failures:
            log.warning("connected to %s after %d failed attempts", self.where, self._failures)
        else:
            log.info("connected to %s (session %s)", self.where,
                     "resumed" if flags.session_present else "new")
        self._trouble, self._failures = None, 0
        if self._leaving:
            client.unsubscribe(self.filter)
        else:
            client.subscribe(self.filter, qos=1)

    def _connect_failed(self, exc: OSError) -> None:
        self._report(_why(exc, self.host), logging.WARNING)

    def _report(self, reason: str, level: int) -> None:
        """Log a failed connection attempt: a new reason at once, the same again after
        ``REPEAT_LOG`` seconds."""
        now = time.monotonic()
        self._failures += 1
        if reason != self._trouble or now - self._trouble_logged >= REPEAT_LOG:
            self._trouble_logged = now
            log.log(level, "cannot connect to the MQTT broker %s: %s; trying again (every "
                    "%d s at most) until stopped", self.where, reason, MAX_RECONNECT_DELAY)
        else:
            log.debug("cannot connect to %s: %s (attempt %d)", self.where, reason,
                      self._failures)
        self._trouble = reason

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("broker refused the subscription to %s: %s", self.filter,
                      ", ".join(str(r) for r in failed))
            return
        self._subscribed.set()

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                        properties: Any) -> None:
        # "no subscription existed" too: the session was not in the group (any more)
        with self._handling:
            self._last_message = time.monotonic()  # the quiet time counts from here
        self._left.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._subscribed.clear()
        self._left.clear()
        if not self._closing:
            log.warning("lost the connection to %s (%s); reconnecting (if this repeats "
                        "every few seconds, another receiver may be connecting as %s: each "
                        "needs its own --client-id)", self.where, reason, self.client_id)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._handling:
            if self._closing:  # not acknowledged: the broker keeps it for the next session
                return
            claimed = _user_property(msg, BATCH_ID_PROPERTY)
            try:
                if len(msg.payload) > self.settings.max_bytes:
                    outcome = self.receiver.refuse(
                        f"a message of {len(msg.payload)} bytes, over the limit of "
                        f"{self.settings.max_bytes}", self.transport)
                else:
                    outcome = self.receiver.accept(bytes(msg.payload), claimed, self.transport)
            except Exception as exc:  # storage failure (or a bug): let the broker keep it
                log.error("could not store the batch of message %d on %s: %s; not "
                          "acknowledged, reconnecting so that the broker sends it again",
                          msg.mid, msg.topic, exc, exc_info=not isinstance(exc, ReceiverError))
                _drop_connection(client)
                return
            if outcome.status == "invalid":
                log.warning("message on %s refused (acknowledged, not stored): %s", msg.topic,
                            outcome.reason)
            client.ack(msg.mid, msg.qos)
            self._last_message = time.monotonic()
            self._handled += 1


def subscribe(receiver: Receiver, url: str, **settings: Any) -> MqttReceiver:
    """Start a subscriber storing into ``receiver``; keyword arguments are
    :class:`MqttSettings` fields (topic, client_id, share, ca_file, cert_file, key_file,
    session_expiry, max_bytes). ReceiverError for a bad URL, TLS files or share group."""
    return MqttReceiver(receiver, MqttSettings(url, **settings)).start()


def _user_property(msg: mqtt.MQTTMessage, name: str) -> str | None:
    props = getattr(msg, "properties", None)
    for key, value in getattr(props, "UserProperty", None) or []:
        if key == name:
            return str(value)
    return None


def _why(exc: OSError, host: str) -> str:
    """Why connecting failed, in a few words."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed: {exc.verify_message or exc.reason} "
                f"(is --ca-file the CA that signed the broker's certificate?)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name {host!r}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, on this port?)"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer (mqtts:// to a plain MQTT port, or the reverse?)"
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    return f"{exc.strerror or exc}"


def _drop_connection(client: mqtt.Client) -> None:
    sock = client.socket()
    if isinstance(sock, socket.socket):  # an SSLSocket too
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _all_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return all(is_loopback(str(info[4][0])) for info in infos)


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)
