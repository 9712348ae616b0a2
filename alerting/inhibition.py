"""Inhibition: a firing alert that matches a rule's source mutes the alerts matching its
target with equal ``equal`` labels (by default: a camera-confirmed alert mutes the audio-only
alert of the same site, because the camera already said it, with a picture)."""

from __future__ import annotations

from alerting.config import InhibitRule
from alerting.matchers import all_match
from alerting.state import AlertSnapshot


class Inhibitor:
    def __init__(self, rules: list[InhibitRule]):
        self.rules = [(r.source(), r.target(), tuple(r.equal)) for r in rules]

    def targets_possible(self, alert: AlertSnapshot) -> bool:
        """Cheap pre-check: could any rule mute this alert at all?"""
        labels = alert.labels()
        return any(all_match(target, labels) for _, target, _ in self.rules)

    def inhibited_by(self, alert: AlertSnapshot, others: list[AlertSnapshot]) -> str | None:
        """The fingerprint of an alert that mutes ``alert``, or None."""
        labels = alert.labels()
        for source, target, equal in self.rules:
            if not all_match(target, labels):
                continue
            for other in others:
                if other.fp == alert.fp or other.status != "firing":
                    continue
                theirs = other.labels()
                if all_match(source, theirs) and all(theirs.get(e) == labels.get(e) for e in equal):
                    return other.fp
        return None
