"""The technician's console: what ``bavard live`` and ``bavard record`` are made of.

:mod:`.live_model` holds the live table's state (values, rates, ages, highlights,
history), :mod:`.live_view` draws it with rich, :mod:`.keys` reads the keyboard,
:mod:`.live_feed` brings samples from the service or straight from a bus or a log;
:mod:`.candump_writer` writes what ``bavard record`` records.
"""
