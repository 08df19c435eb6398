"""bavard: an open on-board edge agent for connected vehicles."""

__version__ = "0.1.0"
