"""A paho subscriber for the MQTT upload tests: collects what reaches the broker.

MQTT 5 with a persistent session (clean start off, one hour of expiry) and
paho's own reconnect, so messages published while the broker restarts are
still delivered once it is back.
"""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    user_properties: tuple[tuple[str, str], ...]


class Subscriber:
    def __init__(self, port: int, topic: str = "#", version: int = 5) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self._subscribed = threading.Event()
        self._topic = topic
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311,
                                  clean_session=None if version == 5 else False)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        if version == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        else:
            self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(5.0):
            raise AssertionError("the test subscriber did not get its SUBACK within 5 s")

    def get(self, timeout: float = 5.0) -> Message:
        return self.messages.get(timeout=timeout)

    def nothing(self, wait: float = 0.3) -> bool:
        try:
            self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg.properties, "UserProperty", None) or []
        self.messages.put(Message(msg.topic, msg.payload, tuple(tuple(p) for p in props)))
