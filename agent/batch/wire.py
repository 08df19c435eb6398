"""How a batch travels, shared by the sender (agent.upload) and the receiver (agent.receiver).

These names are part of the protocol (docs/upload.md), next to the format they carry
(docs/batch-format.md): both sides import them from here, so neither depends on the other.
"""

from __future__ import annotations

#: The HTTP content type of a batch.
CONTENT_TYPE = "application/vnd.bavard.batch"
#: The HTTP header that carries the batch id, so a receiver can drop a repeat.
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: The MQTT 5 user property that carries the batch id.
BATCH_ID_PROPERTY = "batch-id"
