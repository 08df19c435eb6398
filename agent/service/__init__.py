"""The agent as a system service: daemon wiring, sd_notify, the watchdog, journal logging."""
