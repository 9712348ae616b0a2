"""Pure rules of alerting: matchers, durations, routing tree, inhibition, lifecycle timing."""

from __future__ import annotations

import pytest

from alerting.config import AlertingSettings, InhibitRule, RouteConfig, camera_mutes_audio
from alerting.durations import format_duration, parse_duration
from alerting.inhibition import Inhibitor
from alerting.lifecycle import Timing, evaluate, resolve_at, sent_routes
from alerting.matchers import Matcher, MatcherError, from_maps
from alerting.routing import Router
from alerting.state import AlertSnapshot, Coverage, fingerprint


def snap(**fields) -> AlertSnapshot:
    raw = {"fp": "f1", "inc": "1", "version": "3", "status": "firing", "site": "north", "source": "cam-1",
           "label": "drone", "sources": "cam-1", "sfps": "f1", "modalities": "vision", "severity": "warning",
           "max_score": "0.9", "starts_ms": "1000", "last_seen_ms": "1000", "last_obs_ms": "1000",
           "created_ms": "1000"}
    raw.update({k.replace("__", ":"): str(v) for k, v in fields.items()})
    return AlertSnapshot(raw)


# ------------------------------------------------------------------ matchers, durations


@pytest.mark.parametrize("text,labels,expected", [
    ("site=north", {"site": ("north",)}, True),
    ("site=north", {"site": ("south",)}, False),
    ("site!=north", {"site": ("south",)}, True),
    ("source=~cam-.*", {"source": ("mic-1", "cam-2")}, True),
    ("source=~cam", {"source": ("cam-2",)}, False),  # anchored, like Alertmanager
    ("modality!~vis.*", {"modality": ("audio",)}, True),
    ("modality=vision", {"modality": ("vision", "audio")}, True),  # multi-valued labels
    ("modality!=vision", {"modality": ("vision", "audio")}, False),
    ("absent=x", {}, False),
    ("absent!=x", {}, True),
    ('site="north"', {"site": ("north",)}, True),
])
def test_matchers(text, labels, expected):
    assert Matcher.parse(text).matches(labels) is expected


def test_bad_matchers_say_what_to_write():
    with pytest.raises(MatcherError, match="name=value"):
        Matcher.parse("site north")
    with pytest.raises(MatcherError, match="bad regex"):
        Matcher.parse("site=~(")


def test_match_maps_lists_mean_any_of():
    (m,) = from_maps({"site": ["north", "south"]})
    assert m.matches({"site": ("south",)}) and not m.matches({"site": ("east",)})


@pytest.mark.parametrize("text,seconds", [("250ms", 0.25), ("2s", 2), ("5m", 300), ("1h", 3600), ("1d", 86400),
                                          ("1.5", 1.5), (3, 3.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_duration():
    with pytest.raises(ValueError, match="250ms"):
        parse_duration("soon")
    assert format_duration(3600) == "1h" and format_duration(0.2) == "200ms"


# ------------------------------------------------------------------ routing


def tree() -> Router:
    return Router(RouteConfig.model_validate({
        "receivers": ["default"], "group_wait": 1, "repeat_interval": 60,
        "routes": [
            {"name": "sms", "match": {"severity": "critical"}, "receivers": ["sms"], "continue": True,
             "group_wait": 0},
            {"name": "north", "match": {"site": "north"}, "receivers": ["slack-north"],
             "routes": [{"name": "north-cams", "match_re": {"source": "cam-.*"}, "receivers": ["cams"],
                         "repeat_interval": 10}]},
            {"name": "south", "match": {"site": "south"}, "receivers": ["slack-south"]},
        ]}))


def labels(**kw):
    base = {"site": ("north",), "source": ("mic-1",), "label": ("drone",), "severity": ("warning",),
            "modality": ("audio",)}
    base.update({k: (v,) if isinstance(v, str) else v for k, v in kw.items()})
    return base


def test_routing_first_match_descends_and_inherits_timing():
    ids = [r.id for r in tree().match(labels(source="cam-1"))]
    assert ids == ["north-cams"]
    route = tree().get("north-cams")
    assert (route.group_wait, route.repeat_interval, route.receivers) == (1, 10, ("cams",))


def test_routing_continue_and_fallback_to_parent_and_root():
    r = tree()
    assert [x.id for x in r.match(labels(severity="critical"))] == ["sms", "north"]
    assert [x.id for x in r.match(labels(site="east"))] == ["root"]
    assert r.get("sms").group_wait == 0


def test_route_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        Router(RouteConfig.model_validate({"group_wait": 1, "repeat_interval": 1,
                                           "routes": [{"name": "a"}, {"name": "a"}]}))


def test_config_rejects_unknown_receivers_and_short_leases():
    with pytest.raises(ValueError, match="not channels: nope"):
        AlertingSettings.model_validate({"route": {"group_wait": 1, "repeat_interval": 1, "receivers": ["nope"]}})
    with pytest.raises(ValueError, match="lease"):
        AlertingSettings.model_validate({"outbox": {"lease": 2},
                                         "channels": {"h": {"type": "webhook", "url": "http://x", "timeout": 5}}})


# ------------------------------------------------------------------ inhibition


def test_camera_alert_mutes_audio_only_alert_of_same_site():
    inhibitor = Inhibitor([camera_mutes_audio()])
    cam = snap(fp="cam", modalities="vision")
    mic = snap(fp="mic", source="mic-1", sources="mic-1", modalities="audio")
    both = snap(fp="both", sources="cam-1,mic-1", modalities="audio,vision")
    other_site = snap(fp="cam2", site="south")
    assert inhibitor.inhibited_by(mic, [cam, mic]) == "cam"
    assert inhibitor.inhibited_by(mic, [other_site, mic]) is None
    assert inhibitor.inhibited_by(cam, [cam, mic]) is None  # the camera alert is never muted
    assert inhibitor.inhibited_by(both, [cam, both]) is None  # corroborated alerts are not audio-only
    assert inhibitor.inhibited_by(mic, [snap(fp="cam", status="resolved"), mic]) is None


def test_inhibit_rule_equal_labels():
    rule = InhibitRule(source_match={"severity": "critical"}, target_match={"severity": "warning"}, equal=["site"])
    crit = snap(fp="a", severity="critical")
    warn = snap(fp="b", severity="warning", site="north")
    assert Inhibitor([rule]).inhibited_by(warn, [crit]) == "a"
    assert Inhibitor([rule]).inhibited_by(snap(fp="c", site="south"), [crit]) is None


# ------------------------------------------------------------------ lifecycle

T = Timing(resolve_after_ms=5000, mute_recheck_ms=500)


def simple_router(group_wait=1.0, repeat=10.0) -> Router:
    return Router(RouteConfig(receivers=["hook"], group_wait=group_wait, repeat_interval=repeat, send_resolved=True))


def apply(a: AlertSnapshot, d) -> AlertSnapshot:
    raw = dict(a.raw)
    raw.update({k: str(v) for k, v in d.updates.items()})
    return AlertSnapshot(raw)


def test_group_wait_then_one_firing_then_repeat_then_resolved():
    r = simple_router()
    a = snap()
    d = evaluate(a, 1500, r, T)  # inside group_wait: nothing yet, look again when it ends
    assert d.planned == [] and d.next_tick_ms == 2000
    d = evaluate(a, 2000, r, T)
    assert sorted((p.event, p.route.id if p.route else "topic") for p in d.planned) == [
        ("firing", "root"), ("firing", "topic")]
    a = apply(a, d)
    assert sent_routes(a) == ["root"]
    assert evaluate(a, 2001, r, T).planned == []  # already told: no duplicate
    a = apply(a, evaluate(a, 5999, r, T))
    a.raw["last_obs_ms"] = "9000"  # detections keep coming
    d = evaluate(a, 12000, r, T)
    assert {(p.event, p.seq) for p in d.planned} == {("repeat", 2)}
    a = apply(a, d)
    d = evaluate(a, 14000, r, T)  # 5 s after the last detection
    assert d.resolve and {(p.event, p.seq) for p in d.planned} == {("resolved", 3)}
    assert d.updates["status"] == "resolved" and d.next_tick_ms is None


def test_resolve_waits_until_the_detections_up_to_the_resolve_time_are_read():
    r = simple_router(repeat=60)
    a = apply(snap(), evaluate(snap(), 2000, r, T))
    a.raw["last_obs_ms"] = "9000"  # resolve due at 14000
    # the consumers have observed only what was written before 12000: a detection may be unread
    d = evaluate(a, 14000, r, T, watermark_ms=12000)
    assert not d.resolve and d.resolve_deferred and d.planned == [] and "status" not in d.updates
    assert d.next_tick_ms == 14000 + T.watermark_recheck_ms
    d = evaluate(a, 14500, r, T, watermark_ms=14000)
    assert d.resolve and not d.resolve_deferred and {p.event for p in d.planned} == {"resolved"}
    # a watermark alone never resolves early, and without one the clock decides
    assert not evaluate(a, 13000, r, T, watermark_ms=13000).resolve
    assert evaluate(a, 14000, r, T).resolve


def test_a_quiet_processor_makes_the_alert_stale_not_resolved_until_reports_flow_again_long_enough():
    r = simple_router(repeat=10)
    a = apply(snap(), evaluate(snap(), 2000, r, T, coverage=Coverage(0, 2000)))  # firing told
    a.raw["last_obs_ms"] = "1000"  # last detection: resolve due at 6000 if the source is watched
    died = Coverage(since_ms=0, last_ms=3000)  # the processor's last summary
    d = evaluate(a, 6000, r, T, coverage=died)  # not stale yet (stale_after 5 s), but not watched up to 6000
    assert not d.resolve and d.resolve_deferred and d.next_tick_ms == 6000 + T.watermark_recheck_ms
    assert evaluate(a, 6000, r, T, coverage=Coverage(0, 6000)).resolve  # a live processor's next summary
    d = evaluate(a, 9000, r, T, coverage=died)
    assert not d.resolve and d.planned == [] and d.went_stale and d.updates == {"stale_ms": 9000}
    assert d.next_tick_ms == 9000 + T.stale_recheck_ms
    a = apply(a, d)
    d = evaluate(a, 13000, r, T, coverage=died)  # the repeat is due (12000), but nobody knows
    assert not d.resolve and d.planned == [] and not d.went_stale and d.updates == {}
    back = Coverage(since_ms=14000, last_ms=14500)  # reports again, after a gap
    d = evaluate(a, 15000, r, T, coverage=back)
    assert not d.resolve and d.updates["stale_ms"] == "" and d.next_tick_ms <= 19000
    assert d.planned == []  # and no "still active" the moment data is back: repeats count from now
    a = apply(a, d)
    assert not evaluate(a, 18900, r, T, coverage=Coverage(14000, 18900)).resolve  # not 5 s of reports yet
    d = evaluate(a, 19100, r, T, coverage=Coverage(14000, 19000))
    assert d.resolve and {p.event for p in d.planned} == {"resolved"}


def test_still_active_repeats_are_held_while_the_detections_stream_is_behind():
    r = simple_router(repeat=10)
    a = apply(snap(), evaluate(snap(), 2000, r, T))  # firing told at 2000: repeat due at 12000
    a.raw["last_obs_ms"] = "11000"  # resolve due at 16000
    assert T.behind_after_ms == 5000
    d = evaluate(a, 12000, r, T, watermark_ms=6000)  # 6 s behind (broker down, consumer lagging)
    assert d.planned == [] and d.updates == {} and d.next_tick_ms == 12000 + T.watermark_recheck_ms
    d = evaluate(a, 12000, r, T, watermark_ms=7500)  # 4.5 s behind: within behind_after
    assert {(p.event, p.seq) for p in d.planned} == {("repeat", 2)}
    assert evaluate(a, 12000, r, T).planned  # no consumer has reported: nothing known to be behind
    off = Timing(resolve_after_ms=5000, mute_recheck_ms=500, behind_after_ms=0)
    assert evaluate(a, 12000, r, off, watermark_ms=0).planned
    # an escalation is news read from detections: it goes out even while behind
    a.raw["severity"] = "critical"
    d = evaluate(a, 12000, r, T, watermark_ms=6000)
    assert {(p.event, p.escalated) for p in d.planned} == {("repeat", True)}


def test_a_repeat_says_when_the_drone_was_last_seen():
    from alerting.events import alert_of

    a = apply(snap(), evaluate(snap(), 2000, simple_router(), T))
    a.raw["last_seen_ms"] = "1700000000000"
    repeat, firing = alert_of(a, "repeat", 1700000060000), alert_of(a, "firing", 1700000060000)
    assert repeat.summary.startswith("Still active: ") and "last seen 2023-11-14T22:13:20" in repeat.summary
    assert "last seen" not in firing.summary and repeat.last_seen_at.timestamp() == 1700000000


def test_an_alert_whose_sources_send_no_summaries_resolves_by_detections_alone():
    r = simple_router(repeat=60)
    a = apply(snap(), evaluate(snap(), 2000, r, T))
    a.raw["last_obs_ms"] = "1000"
    assert evaluate(a, 6000, r, T, coverage=None).resolve
    assert resolve_at(a, 0, T, None) == 6000 and resolve_at(a, 0, T, Coverage(4000, 9000)) == 9000


def test_resolved_goes_only_to_routes_that_heard_firing():
    r = simple_router(group_wait=10)
    d = evaluate(snap(), 7000, r, T)  # resolved before group_wait ended: nobody heard of it
    assert d.resolve and d.planned == []


def test_escalation_sends_a_repeat_at_once():
    r = simple_router()
    a = apply(snap(), evaluate(snap(), 2000, r, T))
    a.raw.update(severity="critical", modalities="audio,vision", sources="cam-1,mic-1", last_obs_ms="2500")
    d = evaluate(a, 2600, r, T)
    assert {(p.event, p.escalated) for p in d.planned} == {("repeat", True)}
    assert len(d.planned) == 2  # the route and the alerts topic


def test_muted_alert_is_rechecked_and_sent_when_the_silence_ends():
    r = simple_router()
    d = evaluate(snap(), 2000, r, T, silenced_by="s1")
    assert [p.route for p in d.planned] == [None]  # the topic still hears about it
    assert d.muted == [("root", "silenced by s1")] and d.next_tick_ms == 2500
    a = apply(snap(), d)
    d = evaluate(a, 2500, r, T)
    assert [(p.event, p.route.id) for p in d.planned] == [("firing", "root")]


def test_fingerprint_is_stable_and_distinct():
    assert fingerprint("n", "cam-1", "drone") == fingerprint("n", "cam-1", "drone")
    assert fingerprint("n", "cam-1", "drone") != fingerprint("n", "cam-2", "drone")
    assert len(fingerprint("n", "c", "d")) == 16


def test_routing_yaml_round_trips_through_the_settings_loader(tmp_path, monkeypatch):
    import yaml

    from alerting.config import AlertingServiceSettings

    monkeypatch.delenv("SKYSENTRY_CONFIG", raising=False)
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump({"alerting": {
        "channels": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/h"}},
        "route": {"group_wait": "500ms", "repeat_interval": "15m", "receivers": ["hook"],
                  "routes": [{"name": "north", "match": {"site": "north"}, "continue": True, "receiver": "hook"}]}}}))
    s = AlertingServiceSettings.load(cfg)
    route = s.alerting.route
    assert route.group_wait == 0.5 and route.repeat_interval == 900 and route.routes[0].continue_
    again = tmp_path / "b.yaml"
    again.write_text(yaml.safe_dump({"alerting": s.alerting.model_dump(mode="json")}))
    assert AlertingServiceSettings.load(again).alerting.route == route


def test_the_example_config_is_valid(monkeypatch):
    from pathlib import Path

    from alerting.config import AlertingServiceSettings

    monkeypatch.delenv("SKYSENTRY_CONFIG", raising=False)
    path = Path(__file__).resolve().parents[3] / "deploy" / "alerting.example.yaml"
    s = AlertingServiceSettings.load(path)
    router = Router(s.alerting.route)
    crit = {"site": ("airfield-north",), "source": ("cam-1", "mic-1"), "label": ("drone",),
            "severity": ("critical",), "modality": ("vision", "audio")}
    assert [r.id for r in router.match(crit)] == ["critical-pager", "airfield-cameras"]
    assert set(s.alerting.channels) == {"ops_webhook", "slack_ops", "oncall_sms", "teams"}
