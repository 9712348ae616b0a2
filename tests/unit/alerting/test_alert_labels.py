"""Only the labels in ``alerting.alert_labels`` (default ``drone``) enter confirmation; a vision
model's other classes seen (bird, airplane, helicopter) are counted and acknowledged, never
dead-lettered. The consumer's filter on its own: the Redis state is stood in for by a recorder
(the same stream through real Kafka and Redis is in tests/integration/alerting/test_labels.py)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from alerting.config import AlertingSettings
from alerting.consumer import DetectionConsumer
from alerting.state import Observation
from skysentry.messages import Detection, ModelRef, encode_structured


class RecordingState:
    """Confirms like the real state in the simplest case: fires on the k-th detection of a
    (source, label) and refreshes after. Records what reached it."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.seen: list[Detection] = []
        self.counts: Counter = Counter()
        self.reports: list = []

    async def note_reports(self, reports) -> None:  # every readable record is its processor's report
        self.reports.extend(reports)

    async def observe_many(self, detections: list[Detection]) -> list[Observation]:
        out = []
        for d in detections:
            self.seen.append(d)
            self.counts[(d.source, d.label)] += 1
            n = self.counts[(d.source, d.label)]
            out.append(Observation("fired" if n == self.k else "refresh" if n > self.k else "pending", d.source))
        return out


class NoDLQ:
    async def send_and_wait(self, *args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("a detection of another class must not be dead-lettered")


def record(label: str, seq: int, score: float = 0.9, source: str = "cam-1") -> SimpleNamespace:
    now = datetime.now(timezone.utc)
    d = Detection(site="north", source=source, modality="vision", label=label, score=score,
                  model=ModelRef(name="vision", version="4"), input_event_id=str(uuid.uuid4()), input_seq=seq,
                  captured_at=now, processed_at=now)
    value, headers = encode_structured(d, source="test/vision")
    return SimpleNamespace(value=value, headers=headers, key=source.encode(), topic="detections", partition=0,
                           offset=seq, timestamp=-1)


def outcome_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("skysentry_alerting_detections_total", {"outcome": outcome}) or 0.0


async def run_stream(label: str, settings: AlertingSettings | None = None, n: int = 10):
    settings = settings or AlertingSettings()
    state = RecordingState(settings.confirm.k)
    fired = []
    consumer = DetectionConsumer(consumer=None, producer=NoDLQ(), state=state, settings=settings,
                                 on_new_alert=lambda: fired.append(True))
    results = await consumer.process([record(label, i) for i in range(n)])
    return state, results, fired


def test_the_default_alert_labels_are_drone_only():
    assert AlertingSettings().alert_labels == ["drone"]
    assert AlertingSettings(alert_labels=["drone", "helicopter"]).alert_labels == ["drone", "helicopter"]
    with pytest.raises(ValidationError):
        AlertingSettings(alert_labels=[])  # nothing could ever alert: a configuration mistake


@pytest.mark.parametrize("label", ["bird", "airplane", "helicopter", "kite-from-another-vendor"])
async def test_a_stream_of_other_classes_never_fires_and_is_counted(label):
    before = outcome_count("not_alerting_label")
    state, results, fired = await run_stream(label)
    assert state.seen == [] and results == [] and fired == []
    assert outcome_count("not_alerting_label") - before == 10


async def test_the_same_stream_as_drone_fires():
    state, results, fired = await run_stream("drone")
    assert len(state.seen) == 10 and fired == [True]
    assert [r.outcome for r in results].count("fired") == 1


async def test_a_low_scoring_bird_counts_as_not_alerting_not_below_threshold():
    settings = AlertingSettings()
    consumer = DetectionConsumer(consumer=None, producer=NoDLQ(), state=RecordingState(3), settings=settings)
    before = (outcome_count("not_alerting_label"), outcome_count("below_threshold"))
    await consumer.process([record("bird", 0, score=0.1), record("drone", 1, score=0.1)])
    assert outcome_count("not_alerting_label") - before[0] == 1
    assert outcome_count("below_threshold") - before[1] == 1


async def test_alert_labels_is_a_setting():
    state, results, fired = await run_stream("helicopter", AlertingSettings(alert_labels=["drone", "helicopter"]))
    assert len(state.seen) == 10 and fired == [True]
