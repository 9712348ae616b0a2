"""Alerting (DESIGN §6): confirm detections, deduplicate in Redis, route, deliver.

Stages, Alertmanager style: dedup (:mod:`alerting.consumer`, :mod:`alerting.state`) → wait
and route (:mod:`alerting.dispatch`, :mod:`alerting.lifecycle`, :mod:`alerting.routing`,
silences, inhibition) → retry and log (:mod:`alerting.delivery`, :mod:`alerting.outbox`) →
channels (:mod:`alerting.channels`). ``alerting.cli:app`` is the ``skysentry alert`` CLI.
"""
