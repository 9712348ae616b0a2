"""``skysentry alert …`` commands against the real Redis and a loopback receiver."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from alerting.channels.webhook import verify_signature
from alerting.cli import app

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture
def cli_env(stack, uid, monkeypatch, tmp_path, receiver):
    monkeypatch.setenv("SKYSENTRY_ALERTING__KEY_PREFIX", f"test:{uid}")
    monkeypatch.setenv("SKYSENTRY_ALERTING__CHANNELS__HOOK__SECRET", "cli-secret-77")
    monkeypatch.setenv("SKYSENTRY_ALERTING__CHANNELS__SLACK__URL", receiver.url("/slack/T1/B1/secret-path"))
    receiver.respond("/slack", [500])
    config = tmp_path / "alerting.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"channels": {
        "hook": {"type": "webhook", "url": receiver.url("/hook")},
        "slack": {"type": "slack", "url": "set-from-env", "max_attempts": 1},
    }, "route": {"group_wait": 1, "repeat_interval": 60, "receivers": ["hook"]}}}))
    monkeypatch.setenv("SKYSENTRY_CONFIG", str(config))
    return config


def test_silence_add_list_expire(cli_env):
    out = runner.invoke(app, ["silence", "add", "site=north", "source=~cam-.*", "-d", "30m", "-m", "crane lift",
                              "--author", "ops", "--json"])
    assert out.exit_code == 0, out.output
    silence = json.loads(out.output)
    listed = runner.invoke(app, ["silence", "list", "--json"])
    assert [s["id"] for s in json.loads(listed.output)] == [silence["id"]]
    assert "crane lift" in runner.invoke(app, ["silence", "list"]).output
    assert runner.invoke(app, ["silence", "expire", silence["id"]]).exit_code == 0
    assert json.loads(runner.invoke(app, ["silence", "list", "--json"]).output) == []
    again = runner.invoke(app, ["silence", "expire", silence["id"]])
    assert again.exit_code == 1 and "silence list" in again.output
    bad = runner.invoke(app, ["silence", "add", "site north"])
    assert bad.exit_code == 2 and "name=value" in bad.output


def test_test_channel_sends_one_signed_notification_and_reports_failures(cli_env, receiver):
    ok = runner.invoke(app, ["test-channel", "hook"])
    assert ok.exit_code == 0 and "1/1 delivered" in ok.output, ok.output
    (req,) = receiver.requests("/hook")
    assert verify_signature("cli-secret-77", req.headers["x-skysentry-timestamp"], req.body,
                            req.headers["x-skysentry-signature"])
    assert req.json()["alert"]["site"] == "test"
    failed = runner.invoke(app, ["test-channel", "slack"])
    assert failed.exit_code == 1 and "HTTP 500" in failed.output
    assert "secret-path" not in failed.output  # the Slack URL is a credential
    missing = runner.invoke(app, ["test-channel", "nope"])
    assert missing.exit_code == 2 and "hook" in missing.output


def test_status_reports_state(cli_env, stack, uid):
    runner.invoke(app, ["silence", "add", "site=east", "-d", "5m"])
    out = runner.invoke(app, ["status", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["firing"] == [] and doc["dead_letters"] == 0 and len(doc["silences"]) == 1
    assert doc["channels"] == {"hook": "webhook", "slack": "slack"}
    assert doc["detections_read_up_to"] is None and doc["read_lag_s"] is None
    text = runner.invoke(app, ["status"]).output
    assert "alert(s) firing" in text and "no consumer has reported yet" in text

    asyncio.run(_report_read(stack.redis_url, f"test:{uid}", {0: 2_000, 1: 45_000}))  # partition 1 lags
    doc = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert 45 <= doc["read_lag_s"] < 60 and doc["detections_read_up_to"].endswith("Z")
    text = runner.invoke(app, ["status"]).output
    assert re.search(r"detections read up to \S+Z \((4[5-9]|5\d)(\.\d)? s ago\)", text), text


async def _report_read(redis_url: str, prefix: str, ages_ms: dict[int, int]) -> None:
    import redis.asyncio as aioredis

    from alerting.config import AlertingSettings
    from alerting.state import AlertState

    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await AlertState(client, AlertingSettings(key_prefix=prefix)).advance_watermarks(2, ages_ms)
    finally:
        await client.aclose()


def test_invalid_config_says_what_is_wrong(cli_env, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"alerting": {"route": {"group_wait": 1, "repeat_interval": 1,
                                                          "receivers": ["pager"]}}}))
    out = runner.invoke(app, ["status", "--config", str(bad)])
    assert out.exit_code == 2 and "define the channel in the YAML" in out.output  # env secrets, no channel
    monkeypatch.delenv("SKYSENTRY_ALERTING__CHANNELS__HOOK__SECRET")
    monkeypatch.delenv("SKYSENTRY_ALERTING__CHANNELS__SLACK__URL")
    out = runner.invoke(app, ["status", "--config", str(bad)])
    assert out.exit_code == 2 and "not channels: pager" in out.output
