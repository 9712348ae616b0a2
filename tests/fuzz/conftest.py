"""Counts the inputs each decoder was given (test_decoders.COUNTS) and reports them; with
SKYSENTRY_FUZZ_MIN_TOTAL set (make fuzz), a run that tried fewer inputs in total fails."""

from __future__ import annotations

import os
import sys

import pytest


def _counts(which: str = "COUNTS") -> dict[str, int]:
    for name, module in list(sys.modules.items()):
        if name.endswith("test_decoders") and hasattr(module, which):
            return getattr(module, which)
    return {}


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    counts = _counts()
    if counts:
        read = _counts("ACCEPTED")
        per = ", ".join(f"{k} {v} ({read.get(k, 0)} read)" for k, v in sorted(counts.items()))
        crashes = "0 crashes" if exitstatus == 0 else "CRASHED (see the failures above)"
        terminalreporter.write_line(f"fuzz: {sum(counts.values())} inputs, {crashes}: {per}; the rest refused "
                                    "with a clear error")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus) -> None:
    want = int(os.environ.get("SKYSENTRY_FUZZ_MIN_TOTAL", "0"))
    counts, read = _counts(), _counts("ACCEPTED")
    total = sum(counts.values())
    unread = sorted(k for k in counts if not read.get(k))
    if want and (total < want or unread) and session.exitstatus == 0:
        session.config.get_terminal_writer().line(
            f"fuzz: {total} inputs (at least {want} wanted); decoders that read no input at all: {unread}", red=True)
        session.exitstatus = 1
