"""Fault-drill hooks: crash points a test or an operator's drill turns on by environment
variable, to prove the outbox keeps its promise. Off unless the variable is exactly ``1``.

``SKYSENTRY_ALERTING_CRASH_AFTER_OUTBOX_WRITE=1``
    The process dies (``os._exit(137)``, as after ``kill -9``: no cleanup, no flush of
    anything but this one log line) right after a decision wrote channel notifications to
    the outbox and before any of them is sent. A restarted service must deliver each of them
    exactly once.
"""

from __future__ import annotations

import os
import sys

CRASH_AFTER_OUTBOX_WRITE = "SKYSENTRY_ALERTING_CRASH_AFTER_OUTBOX_WRITE"


def crash_point(variable: str) -> None:
    if os.environ.get(variable) == "1":
        sys.stderr.write(f'{{"level": "critical", "msg": "fault drill: {variable}=1, exiting with 137"}}\n')
        sys.stderr.flush()
        os._exit(137)
