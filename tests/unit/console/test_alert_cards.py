"""Pure parts of the alert cards (console/alerts.py): the silence an alert card's button makes,
and the lineage kept when Redis holds only the newest detections."""

from __future__ import annotations

import pytest

from alerting.matchers import parse_all
from alerting.silences import Silence
from console.alerts import _merge, matcher, scope_matchers

CARD = {"source": "cam-1", "site": "north", "label": "drone"}


@pytest.mark.parametrize("scope,expected", [("source", ["source=cam-1"]), ("site", ["site=north"]),
                                            ("label", ["label=drone"])])
def test_each_scope_silences_what_it_names(scope, expected):
    assert scope_matchers(scope, CARD) == expected


def test_an_unknown_scope_is_refused():
    with pytest.raises(ValueError, match="source, site, label"):
        scope_matchers("fingerprint", CARD)


@pytest.mark.parametrize("value", ["~cam", "=x", " padded ", "cam 1", "cam-1"])
def test_values_that_would_read_as_another_operator_are_quoted(value):
    (m,) = parse_all([matcher("source", value)])
    assert (m.name, m.op, m.value) == ("source", "=", value)
    assert Silence.model_validate({"matchers": [matcher("source", value)], "starts_at": "2026-01-01T00:00:00Z",
                                   "ends_at": "2026-01-01T01:00:00Z"}).matches({"source": (value,)})


def test_lineage_keeps_what_confirmed_the_alert_then_the_newest():
    assert _merge(["a", "b", "c"], ["b", "c", "d", "e"]) == ["a", "b", "c", "d", "e"]
    assert _merge([], ["x", "y"]) == ["x", "y"]
    assert _merge(["a"], [str(i) for i in range(100)], limit=4) == ["a", "97", "98", "99"]
