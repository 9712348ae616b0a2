"""Recurring warnings are rate-limited (first occurrence, then one line per interval with the
count left out: RepeatFilter) and expected broker states are INFO, not ERROR (TransientBrokerFilter)."""

from __future__ import annotations

import io
import json
import logging

from skysentry.logs import JsonFormatter, RepeatFilter, kv


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _logger(clock: Clock) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter(10.0, clock=clock))
    log = logging.getLogger("test.repeat")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, out


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_recurring_error_is_written_once_then_once_per_interval_with_a_count():
    clock = Clock()
    log, out = _logger(clock)
    for i in range(1000):  # a tight retry loop while the broker is away
        clock.t = i * 0.01
        log.warning("fetching detections failed after %.2f s; retrying", 0.5 + i / 1000)
    assert len(_lines(out)) == 1
    clock.t = 10.5
    log.warning("fetching detections failed after %.2f s; retrying", 0.6)
    first, second = _lines(out)
    assert "more like this" not in first["msg"]
    assert second["msg"].endswith("[999 more like this since the last one written]") and second["repeated"] == 999


def test_other_kinds_and_info_lines_are_never_held_back():
    clock = Clock()
    log, out = _logger(clock)
    for _ in range(3):
        log.info("notification delivered", extra=kv(key="k1"))
        log.warning("alert stale", extra=kv(fingerprint="aaaa"))
        log.warning("alert stale", extra=kv(fingerprint="bbbb"))  # another alert: another kind
        log.error("fetching detections failed")  # another level of the same words is another kind
        log.warning("fetching detections failed")
    msgs = [(line["level"], line["msg"], line.get("fingerprint")) for line in _lines(out)]
    assert msgs.count(("info", "notification delivered", None)) == 3
    assert len(msgs) == 3 + 4


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_expected_broker_states_are_written_at_info_with_what_they_mean(monkeypatch):
    from skysentry.logs import TransientBrokerFilter

    f = TransientBrokerFilter()
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)
    r = _record("aiokafka.consumer.fetcher", logging.ERROR,
                "Failed fetch offsets from 1: [Error 6] NotLeaderForPartitionError: TopicPartition(topic='detections')")
    assert f.filter(r) and r.levelname == "INFO" and "leader is moving or being elected" in r.getMessage()
    other = _record("aiokafka.consumer.fetcher", logging.ERROR, "Unexpected error in fetcher: boom")
    assert f.filter(other) and other.levelname == "ERROR"  # not a known transient state: a person must look
    ours = _record("alerting.consumer", logging.ERROR, "NotLeaderForPartitionError while committing")
    assert f.filter(ours) and ours.levelname == "ERROR"  # our own errors are never softened
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    quiet = _record("aiokafka.cluster", logging.ERROR, "GroupCoordinatorNotAvailableError")
    assert not f.filter(quiet)  # below what the process shows: dropped


NATIVE_CHATTER = r"""
import ctypes, logging, os, sys, time
from skysentry.logs import capture_native_stderr, setup_logging
setup_logging(sys.argv[1])
capture_native_stderr()
libc = ctypes.CDLL(None)
libc.dprintf(2, b"Expression 'alsa_snd_pcm_poll_descriptors_revents' failed in 'pa_linux_alsa.c'\n")
os.write(2, b"[rtsp @ 0x55] method DESCRIBE failed: 404 Not Found\n")
time.sleep(0.3)  # the pump thread logs them
logging.getLogger("producers.health").warning("microphone m down: the input stream stopped")
sys.stderr.write("error: printed by Python\n")
"""


def test_what_c_libraries_print_to_stderr_becomes_log_records_never_raw_lines():
    import subprocess
    import sys

    for level, native_records in (("INFO", 0), ("DEBUG", 2)):
        out = subprocess.run([sys.executable, "-c", NATIVE_CHATTER, level], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stderr.splitlines()
        assert lines[-1] == "error: printed by Python"  # Python's own stderr still reaches the terminal
        records = [json.loads(line) for line in lines[:-1]]  # everything else is JSON
        assert [r["msg"] for r in records if r["logger"] == "producers.health"] == [
            "microphone m down: the input stream stopped"]
        native = [r for r in records if r["logger"] == "native"]
        assert len(native) == native_records and all(r["level"] == "debug" for r in native)
        assert "Expression" not in "\n".join(r["msg"] for r in records if r["logger"] != "native")
