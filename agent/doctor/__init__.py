"""``bavard doctor``: every check a technician makes, each pass, warn, fail or skip with
the fix in one line.

One module per family of checks, each returning :class:`~agent.doctor.result.Result`
objects: the service (:mod:`.service`), the configuration (:mod:`.configuration`),
the CAN links from netlink (:mod:`.can_link`, :mod:`.netlink`), the traffic
(:mod:`.traffic`), the OBD adapters and the battery (:mod:`.obd_adapter`), the
disk and the buffer's age (:mod:`.disk`), the clock (:mod:`.clock`), the upload
endpoint (:mod:`.endpoint`, :mod:`.certificate`). :func:`.runner.diagnose` runs
them in that order.
"""

from agent.doctor.result import FAIL, PASS, SKIP, WARN, Result

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Result"]
