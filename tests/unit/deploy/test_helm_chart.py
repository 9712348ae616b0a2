"""The Helm chart's settings block is the settings models' defaults (`skysentry settings
--write-helm` writes it): it fails when a setting is added, removed or changes its default
without the chart following, and when the block no longer loads into the services' settings.
The chart itself is validated by `make check-deploy` (Go: helm lint/template, strict types)."""

from __future__ import annotations

from pathlib import Path

import yaml

from alerting.config import AlertingServiceSettings
from skysentry.cli import HELM_BEGIN, HELM_END, HELM_VALUES, default_settings, helm_settings_block
from stream_processors.settings import ProcessorSettings

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "skysentry"


def test_values_settings_block_is_generated_from_the_models():
    text = HELM_VALUES.read_text()
    start, end = text.index(HELM_BEGIN), text.index(HELM_END)
    block = text[start:end + len(HELM_END) + 1]
    assert block == helm_settings_block(), ("deploy/helm/skysentry/values.yaml's settings drifted from the models: "
                                            "run `skysentry settings --write-helm`")
    assert yaml.safe_load(text)["settings"] == default_settings()


def test_settings_block_loads_into_every_service_and_keeps_the_defaults(tmp_path, monkeypatch):
    for k in [k for k in __import__("os").environ if k.startswith("SKYSENTRY_") or k in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")]:
        monkeypatch.delenv(k)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(yaml.safe_load(HELM_VALUES.read_text())["settings"]))
    for cls in (ProcessorSettings, AlertingServiceSettings):
        loaded = cls.load(settings_file)
        assert loaded.model_dump(exclude={"redis", "kafka"}) == cls().model_dump(exclude={"redis", "kafka"}), cls
        assert loaded.kafka == cls().kafka


def test_no_secret_in_the_settings_block():
    doc = default_settings()
    assert "url" not in doc["redis"] and "sasl_password" not in doc["kafka"]
    assert doc["alerting"]["channels"] == {}


def test_dashboard_uses_only_metrics_the_services_export():
    """Every metric a panel of the Grafana dashboard queries is one a service exports."""
    import json
    import re

    from prometheus_client import REGISTRY

    import alerting.metrics  # noqa: F401 - registers the metrics
    import producers.camera  # noqa: F401
    import producers.health  # noqa: F401
    import producers.publisher  # noqa: F401
    import stream_processors.metrics  # noqa: F401

    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {m.name + sfx for m in REGISTRY.collect() for sfx in suffixes.get(m.type, [""])}
    dash = json.loads((CHART / "dashboards" / "skysentry.json").read_text())
    used = {name for p in dash["panels"] for t in p["targets"]
            for name in re.findall(r"\b(skysentry_[a-z0-9_]+)", t["expr"])}
    assert used and not used - exported, sorted(used - exported)
