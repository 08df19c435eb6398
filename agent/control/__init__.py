"""The control socket: how the technician's commands talk to the running service.

A Unix socket in the service's runtime directory, JSON lines, no network port
(docs/control.md). :mod:`.protocol` is what both ends share, :mod:`.client` the
commands' side, :mod:`.server` and :mod:`.tap` the service's side.
"""
