"""The owner in control: purposes, consent, what leaves the box, and where."""
