"""Settings precedence: defaults < YAML file < environment < explicit arguments."""

import pytest

from skysentry.config import Settings


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SKYSENTRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(clean_env):
    s = Settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert s.topics.frames == "sensor.frames"


def test_yaml_overrides_defaults_and_env_overrides_yaml(clean_env, tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: yaml:1\n  client_id: from-yaml\ncamera:\n  fps: 2.5\n")
    s = Settings.load(cfg)
    assert (s.kafka.bootstrap_servers, s.kafka.client_id, s.camera.fps) == ("yaml:1", "from-yaml", 2.5)
    clean_env.setenv("SKYSENTRY_KAFKA__CLIENT_ID", "from-env")
    s = Settings.load(cfg)
    assert s.kafka.client_id == "from-env"
    assert s.kafka.bootstrap_servers == "yaml:1"  # untouched fields keep the YAML value
    assert Settings.load(cfg, camera={"fps": 9}).camera.fps == 9  # arguments win


def test_well_known_variables_are_honoured_below_prefixed_ones(clean_env):
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9")
    clean_env.setenv("REDIS_URL", "redis://:hunter2@r:1/0")
    s = Settings()
    assert s.kafka.bootstrap_servers == "k:9"
    assert s.redis.url.get_secret_value() == "redis://:hunter2@r:1/0"
    assert "hunter2" not in repr(s)  # secrets never print
    clean_env.setenv("SKYSENTRY_KAFKA__BOOTSTRAP_SERVERS", "prefixed:1")
    assert Settings().kafka.bootstrap_servers == "prefixed:1"


def test_missing_config_file_is_a_clear_error(clean_env, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Settings.load(tmp_path / "nope.yaml")


def test_logs_redact_url_passwords():
    from skysentry.logs import redact

    assert redact("connecting to redis://:s3cret@host:6379/0") == "connecting to redis://:***@host:6379/0"


@pytest.mark.parametrize("text, says", [(b"- kafka\n", "top level must be a mapping"), (b'"x"', "not a str"),
                                        (b"a: [", "not valid YAML"), (b"\xff\xfe", "not UTF-8"),
                                        (b"!!python/object:os.system x", "not valid YAML"),
                                        (b"?", "key None at the top is not a string"),
                                        (b"kafka: {1: x}", "key 1 in kafka is not a string"),
                                        (b"kafka: &a [*a]", "kafka\\[0\\] contains itself")])
def test_a_config_file_that_is_not_a_yaml_mapping_is_refused_naming_the_file(tmp_path, text, says):
    """Found by the fuzzer (tests/fuzz): a top-level list or string crashed inside pydantic-settings
    with 'TypeError: cannot convert dictionary update sequence', and bad YAML escaped the CLIs."""
    from skysentry.config import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=says) as err:
        Settings.load(path)
    assert str(path) in str(err.value)
