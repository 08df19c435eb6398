"""Several MQTT receivers splitting a fleet's batches: the shared subscription's filter,
the instance's client id, and what the broker does when an instance dies.

N instances subscribe to ``$share/GROUP/<topic>`` (MQTT 5 shared subscription) and
the broker hands each batch to one of them. What Mosquitto 2.0.11 (Debian 12's)
does with a member that dies, found by experiment (three QoS 1 members with manual
acknowledgements; one SIGKILLed holding 10 delivered, unacknowledged messages; 30
more published while it was away; tests/test_receiver_scale.py does the same with
receiver processes):

- persistent session (``clean_start=False`` and a session expiry, 7 days, as the
  receiver connects): nothing goes to the other members, neither the dead member's
  unacknowledged messages nor, since the broker still counts its session in the
  group's round robin, its share (1/N) of those published while it is away. All of
  them wait in its session and are delivered, every one, when a client with the same
  id connects again.
- session expiry 0: its unacknowledged messages are dropped with the session (lost);
  the later ones go to the living members.

So each instance keeps a persistent session under its own client id, and the
operator must:

- give every instance a distinct client id that stays the same across its
  restarts, and have a supervisor restart a dead instance with that id (systemd
  ``Restart=always``; on Kubernetes a StatefulSet, whose pod names stay, not a
  Deployment). The restarted instance gets the dead one's batches; the sink's
  dedupe (the lake's files named by batch id, the database's key) makes a batch
  stored but not acknowledged before the crash one copy.
- never run two live instances with one id: they throw each other off in turn
  (Mosquitto 2.0.11 just closes the older connection, which a client cannot tell
  from a network failure). Nothing is lost (it is one session), but every takeover
  sends the batches in flight again; the receiver's warning on a lost connection
  names its client id.
- retire an instance for good with :meth:`MqttReceiver.leave
  <agent.receiver.mqtt_subscriber.MqttReceiver.leave>` (same id): a session simply
  left behind goes on taking its share of the batches until it expires, and then
  drops them. Leaving resumes the session, unsubscribes (the broker then stops
  counting it, but still delivers what it holds), stores what it held, and ends
  the session (expiry 0 on DISCONNECT); measured on Mosquitto 2.0.11 too.

Other brokers (EMQX, HiveMQ, AWS IoT) dispatch differently; stable, distinct ids
are what each of them needs to keep a dead member's batches.

The default client id with a group and no ``--client-id`` is
``bavard-receiver-GROUP-HOSTNAME``: stable across restarts on one machine, so a
restarted instance resumes its own session (a random or per-process id would strand
the dead instance's batches in a session nobody resumes); distinct between machines
or containers, the usual one instance per host. Several instances on one host need
a ``--client-id`` each. Without a group it is ``bavard-receiver``, as before.
"""

from __future__ import annotations

import socket

from agent.errors import ReceiverError

DEFAULT_CLIENT_ID = "bavard-receiver"
SHARE_PREFIX = "$share/"


def subscription_filter(topic: str, share: str | None) -> str:
    """``topic``, or with a group ``$share/{share}/{topic}``; ReceiverError naming
    ``--share`` for a group the broker would refuse (empty, ``/``, ``+``, ``#``)."""
    if share is None:
        return topic
    if not share or any(c in share for c in "/+#\0"):
        raise ReceiverError(f"--share {share!r}: a shared subscription's group name must be "
                            f"non-empty, without / + # or NUL")
    if topic.startswith(SHARE_PREFIX):
        raise ReceiverError(f"--share {share!r} with --topic {topic!r}: the topic is already "
                            f"a shared subscription")
    return f"{SHARE_PREFIX}{share}/{topic}"


def default_client_id(share: str | None) -> str:
    """``bavard-receiver``, or for a member of group ``share``
    ``bavard-receiver-{share}-{hostname}`` (see the module docstring)."""
    if share is None:
        return DEFAULT_CLIENT_ID
    return f"{DEFAULT_CLIENT_ID}-{share}-{socket.gethostname()}"
