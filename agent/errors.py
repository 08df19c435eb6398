"""One exception family for the whole agent.

::

    BavardError                      everything the agent raises on purpose
     ├── ConfigError                 a bad configuration; .problems lists every one
     ├── DbcError                    a DBC file that cannot be loaded (names file:line)
     ├── SourceError                 a frame source that cannot be opened or read
     │    ├── LogFormatError         a log file whose format is unknown or unreadable
     │    └── ObdError               an OBD-II adapter or vehicle that does not answer
     │         ├── ObdAdapterError   the adapter itself: unplugged, garbage, refuses what it
     │         │                     must do (reopen it with backoff)
     │         └── ObdVehicleError   the adapter works, the vehicle does not answer at all
     │                               (ignition off: UNABLE TO CONNECT, BUS INIT ERROR)
     ├── StoreError                  the buffer cannot do what was asked (closed, unknown
     │                               batch range, unusable state directory)
     ├── BatchFormatError            an upload batch that cannot be encoded or decoded
     ├── ControlError                the control socket (agent.control): no service
     │    │                          listening, a refused peer, an error answer
     │    ├── ServiceNotRunningError nothing listens on the socket: says what to run
     │    └── ControlRefusedError    the socket's permissions or the service refused us
     ├── UploadError                 a batch that could not be delivered
     │    ├── TransientUploadError   try again later (refused or reset connection, timeout,
     │    │                          DNS, HTTP 5xx/408/429, no PUBACK); .retry_after
     │    └── RefusedUploadError     the receiver refused it for good (other 4xx, too
     │                               large, MQTT PUBACK reason >= 0x80): dead-letter it
     └── ReceiverError               the reference receiver cannot do what was asked
          └── LakeError              the Parquet lake (agent.lake): a file or directory
                                     that cannot be written or read, a bad partition

Foreign exceptions (OSError, can.CanError, cantools' own errors) are wrapped into
this family at the boundary where they happen, with the place (file:line,
config key, channel) in the message.
"""

from __future__ import annotations


class BavardError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(BavardError):
    """A configuration with one or more problems.

    ``problems`` holds one line per problem, each starting with its key path,
    e.g. ``channels[0].dbc: file not found: x.dbc``.
    """

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.problems))


class DbcError(BavardError):
    """A DBC file that cannot be loaded."""


class SourceError(BavardError):
    """A frame source that cannot be opened or read."""


class LogFormatError(SourceError):
    """A log file whose format is unknown or that cannot be read at all."""


class ObdError(SourceError):
    """An OBD-II adapter or vehicle that does not answer as it should."""


class ObdAdapterError(ObdError):
    """The adapter itself failed: unplugged, garbage on the line, a command it must
    understand refused. The source reopens it with backoff."""


class ObdVehicleError(ObdError):
    """The adapter answers but the vehicle does not (ignition off, wrong protocol):
    UNABLE TO CONNECT, BUS INIT ERROR, CAN ERROR. The source waits and asks again."""


class StoreError(BavardError):
    """The buffer cannot do what was asked: closed, unknown batch range, unusable state dir.

    A full disk or a corrupt database file is *not* an error of this kind: the
    store handles those itself (drops, counts, recovers) and keeps running.
    """


class BatchFormatError(BavardError):
    """Bytes that are not a valid batch of a known version, or a batch that cannot be encoded."""


class UploadError(BavardError):
    """A batch that could not be delivered (see the two subclasses)."""


class TransientUploadError(UploadError):
    """Delivery failed in a way that may pass: retry with backoff.

    ``retry_after`` is the receiver's own wish in seconds (HTTP Retry-After), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RefusedUploadError(UploadError):
    """The receiver refused the batch and will refuse it again: never retry it."""


class ControlError(BavardError):
    """The control socket: a request the service answered with an error, a broken
    connection, or one of the two subclasses. ``code`` is the protocol's error code
    (docs/control.md) when the service answered one."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ServiceNotRunningError(ControlError):
    """No service listens on the control socket (the message says what to run)."""


class ControlRefusedError(ControlError):
    """The socket's permissions, or the service's check of our uid/gid, refused us."""


class ReceiverError(BavardError):
    """The reference receiver (agent.receiver) cannot do what was asked: an unusable
    directory or database, a failed write, a listen address or TLS setup it refuses.

    A bad batch is *not* one: the receiver counts it as invalid and answers the sender.
    """


class LakeError(ReceiverError):
    """The Parquet lake (agent.lake): a file or directory that cannot be written or read,
    a vehicle id that cannot name a partition, a compaction that cannot run. A receiver
    writing into the lake treats it as a failed write (the sender tries again)."""
