"""OBD-II: the SAE J1979 services bavard speaks, over two kinds of adapter.

Layers, each its own module:

* ``pids``, ``dtc``, ``vin``, ``readiness``: what the bytes mean (SAE J1979
  mode 01/02 PIDs, SAE J2012 trouble codes, the VIN of mode 09, the monitors
  of PID 01), pure functions with no I/O;
* ``transport``: the one interface every adapter implements, ``request(payload)``
  -> the replies of each ECU, whole (ISO-TP reassembled);
* ``elm327``: an ELM327 (or clone) on a serial port or ``socket://``, through
  pyserial; ``can_transport``: native OBD over a CAN interface (SocketCAN's
  kernel ISO-TP, else the ``can-isotp`` package's user-space stack);
* ``client``: the services (PIDs, DTCs, VIN, readiness, freeze frame, clear)
  on any transport; ``scheduler``: which PIDs to ask for next.

python-obd (GPL-2.0-only) is not used here: bavard's own ELM327 layer does
what python-obd cannot (whole VINs, several ECUs kept apart, several PIDs in
one request, the reply count, clones that refuse commands). It is an optional
extra for the benchmark that compares both.
"""
