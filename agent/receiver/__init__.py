"""The reference receiver: the other end of the upload, for tests, demos and small fleets.

It takes batches over HTTP(S) (one per POST) and MQTT (a QoS 1 subscriber with a
persistent session, alone or one of a shared subscription's group), checks each one
completely, and stores it once in SQLite, samples and all, so that what was sent can
be read back and compared exactly, and/or in the Parquet lake (:mod:`agent.lake`),
which any number of receivers may write.

* :mod:`.core`: :class:`Receiver` (``accept(payload, claimed_id, transport) -> Outcome``),
  the checks and the dedupe, thread-safe
* :mod:`.counters`: the counters of a receiver without a database
* :mod:`.database`: :class:`ReceiverDb`, ``DIR/receiver.sqlite`` (one transaction per
  batch; reading back batches, samples, events, frames, metadata, counters)
* :mod:`.schema` and :mod:`.values`: the tables, and how exact values are kept in them
* :mod:`.http_server`: ``serve(receiver, host, port, tls=...) -> HttpReceiver``
* :mod:`.listen`: ``HOST:PORT``, the loopback-only rule for plain HTTP, TLS contexts
* :mod:`.mqtt_subscriber`: ``subscribe(receiver, url, ...) -> MqttReceiver``
* :mod:`.mqtt_share`: shared subscriptions (``$share/GROUP/...``), client ids, and what
  the broker does when one of the group dies
* :mod:`.summary`: what arrived, per vehicle and signal (``bavard receive --summary``)

Submodules are imported on use: ``import agent.receiver`` alone loads neither
paho nor the HTTP server.
"""
