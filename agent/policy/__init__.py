"""What to keep: signal selection, rate limits and on-change filtering."""
