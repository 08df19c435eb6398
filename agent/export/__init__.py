"""``bavard export``: what the local buffer holds, as an open bundle that anyone can read
without bavard (docs/export.md). ``bavard plot`` reads the buffer the same way."""
