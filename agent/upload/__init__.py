"""Uploading batches: transports (HTTPS, MQTT), the connectivity gate, the uploader loop."""
